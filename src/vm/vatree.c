/* vatree.c - the vmalloc space's ranges: an AVL tree by address, augmented
 * with the largest free range below each node.
 *
 * Why this structure: the space holds few thousand to a few hundred
 * thousand ranges of any length, and three questions are asked of it: the
 * lowest free range that fits a length and an alignment (allocation), the
 * range an address lies in (free, vmalloc_to_phys) and a range's neighbours
 * (merging on free). Keeping free and used ranges in one tree answers all
 * three by one descent, and the augmentation prunes every subtree that
 * cannot hold the request. Lowest-address first fit keeps live areas packed
 * at the bottom of the space and large free ranges above them (Linux's
 * vmap_area tree makes the same choice). Segregated free lists (TLSF) would
 * find a fit in O(1), but need a second structure to find neighbours and
 * areas by address, and spread areas over the whole space.
 *
 * The functions recurse: an AVL tree of n nodes is at most 1.44 log2(n)
 * deep, under 64 levels for any address space.
 */
#include "vm_internal.h"

static inline unsigned height(const struct vm_node *n) { return n ? n->height : 0; }
static inline size_t max_free(const struct vm_node *n) { return n ? n->max_free : 0; }
static inline size_t max_of(size_t a, size_t b) { return a > b ? a : b; }

static void recompute(struct vm_node *n)
{
    unsigned hl = height(n->left), hr = height(n->right);
    n->height = (uint8_t)(1 + (hl > hr ? hl : hr));
    size_t own = n->state == VM_FREE ? n->pages : 0;
    n->max_free = max_of(own, max_of(max_free(n->left), max_free(n->right)));
}

static struct vm_node *rotate_right(struct vm_node *y)
{
    struct vm_node *x = y->left;
    y->left = x->right;
    x->right = y;
    recompute(y);
    recompute(x);
    return x;
}

static struct vm_node *rotate_left(struct vm_node *x)
{
    struct vm_node *y = x->right;
    x->right = y->left;
    y->left = x;
    recompute(x);
    recompute(y);
    return y;
}

static struct vm_node *rebalance(struct vm_node *n)
{
    recompute(n);
    int balance = (int)height(n->left) - (int)height(n->right);
    if (balance > 1) {
        if (height(n->left->left) < height(n->left->right))
            n->left = rotate_left(n->left);
        return rotate_right(n);
    }
    if (balance < -1) {
        if (height(n->right->right) < height(n->right->left))
            n->right = rotate_right(n->right);
        return rotate_left(n);
    }
    return n;
}

struct vm_node *kmm__vt_insert(struct vm_node *root, struct vm_node *n)
{
    if (!root) {
        n->left = n->right = NULL;
        recompute(n);
        return n;
    }
    if (n->first < root->first)
        root->left = kmm__vt_insert(root->left, n);
    else
        root->right = kmm__vt_insert(root->right, n);
    return rebalance(root);
}

static struct vm_node *remove_leftmost(struct vm_node *n, struct vm_node **leftmost)
{
    if (!n->left) {
        *leftmost = n;
        return n->right;
    }
    n->left = remove_leftmost(n->left, leftmost);
    return rebalance(n);
}

struct vm_node *kmm__vt_remove(struct vm_node *root, uintptr_t first)
{
    if (!root)
        return NULL;
    if (first < root->first) {
        root->left = kmm__vt_remove(root->left, first);
    } else if (first > root->first) {
        root->right = kmm__vt_remove(root->right, first);
    } else {
        if (!root->left || !root->right)
            return root->left ? root->left : root->right;
        struct vm_node *successor;
        struct vm_node *right = remove_leftmost(root->right, &successor);
        successor->left = root->left;
        successor->right = right;
        return rebalance(successor);
    }
    return rebalance(root);
}

void kmm__vt_update(struct vm_node *root, uintptr_t first)
{
    if (!root)
        return;
    if (first < root->first)
        kmm__vt_update(root->left, first);
    else if (first > root->first)
        kmm__vt_update(root->right, first);
    recompute(root);
}

struct vm_node *kmm__vt_find(struct vm_node *root, uintptr_t page)
{
    struct vm_node *n = root;
    while (n) {
        if (page < n->first)
            n = n->left;
        else if (page >= vm_node_end(n))
            n = n->right;
        else
            return n;
    }
    return NULL;
}

static bool fits(const struct vm_node *n, size_t pages, size_t align, uintptr_t from, uintptr_t *at)
{
    uintptr_t low = n->first > from ? n->first : from;
    uintptr_t a = (low + align - 1) & ~(uintptr_t)(align - 1);
    if (n->state != VM_FREE || a < low || a + pages < a || a + pages > vm_node_end(n))
        return false;
    *at = a;
    return true;
}

/* The lowest fit at or above page from in the subtree, visiting only
 * subtrees whose largest free range is at least prune pages. A left
 * subtree lies wholly below its node: skipped when the node starts at or
 * below from. */
static struct vm_node *lowest_fit(struct vm_node *n, size_t pages, size_t align, size_t prune, uintptr_t from,
                                  uintptr_t *at)
{
    while (n && n->max_free >= prune) {
        if (n->first > from) {
            struct vm_node *found = lowest_fit(n->left, pages, align, prune, from, at);
            if (found)
                return found;
        }
        if (fits(n, pages, align, from, at))
            return n;
        n = n->right;
    }
    return NULL;
}

struct vm_node *kmm__vt_lowest_fit(struct vm_node *root, size_t pages, size_t align, uintptr_t from, uintptr_t *at)
{
    /* First with a pruning bound that guarantees a fit wherever it lets the
     * search in (pages + align - 1 pages hold an aligned run of pages
     * anywhere; but in the one range that straddles from): one descent,
     * O(log n). Only if that finds nothing, the exact bound (a range of at
     * least pages), which may have to look at every such range for one
     * that happens to be aligned. */
    size_t sure = pages + align - 1;
    if (sure >= pages) {
        struct vm_node *n = lowest_fit(root, pages, align, sure, from, at);
        if (n || (align == 1 && from == 0))
            return n;
    }
    return lowest_fit(root, pages, align, pages, from, at);
}

int kmm__vt_walk(struct vm_node *root, int (*fn)(void *arg, struct vm_node *n), void *arg)
{
    while (root) {
        int rc = kmm__vt_walk(root->left, fn, arg);
        if (rc)
            return rc;
        if ((rc = fn(arg, root)) != 0)
            return rc;
        root = root->right;
    }
    return 0;
}

/* Height of the subtree, or 0 with *why set if it breaks an invariant;
 * lo and hi bound the keys it may hold. */
static unsigned check(const struct vm_node *n, uintptr_t lo, uintptr_t hi, const char **why)
{
    if (!n || *why)
        return 0;
    if (n->first < lo || n->first > hi) {
        *why = "vmalloc tree: a node out of address order";
        return 0;
    }
    unsigned hl = check(n->left, lo, n->first ? n->first - 1 : 0, why);
    unsigned hr = check(n->right, n->first + 1, hi, why);
    if (*why)
        return 0;
    unsigned h = 1 + (hl > hr ? hl : hr);
    if (n->height != h)
        *why = "vmalloc tree: a node's height is wrong";
    else if (hl > hr + 1 || hr > hl + 1)
        *why = "vmalloc tree: a node is out of balance";
    else if (n->max_free !=
             max_of(n->state == VM_FREE ? n->pages : 0, max_of(max_free(n->left), max_free(n->right))))
        *why = "vmalloc tree: a node's largest free range below is wrong";
    return h;
}

const char *kmm__vt_check(struct vm_node *root)
{
    const char *why = NULL;
    check(root, 0, UINTPTR_MAX, &why);
    return why;
}
