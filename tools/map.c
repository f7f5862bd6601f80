/* map.c - the picture of `kmm map` and of the demo's section 5: physical
 * memory as a grid of pages coloured by what each page is (kmm_page_kinds),
 * written as SVG (plain text: any browser shows it, and it zooms).
 *
 * One row is KMM_UNMAPPED_REFILL_BYTES (2 MiB, one large page of the direct
 * map) or a power-of-two multiple of it when memory is large, so a row
 * with a red line in it is a large mapping that had to be split. One cell
 * is one page, or a power-of-two group of pages when a row would have more
 * than MAX_CELLS_PER_ROW cells: a group is coloured by its majority kind
 * and hatched when its pages are of several kinds. The direct map's split
 * points (two neighbouring pages of memory, one in the direct map and one
 * out of it: KMM_PAGE_UNMAPPED_BIT differs) are red lines at the exact
 * page boundary, and their count is in the panel's title beside the
 * direct map's mapping count that kmm_unmapped_stats reports. Several
 * memory systems are drawn as panels side by side, at one scale.
 */
#include "tool.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CELLS_PER_ROW 512
#define MAX_ROWS 512
#define GRID_WIDTH_PX 1024.0
#define GRID_HEIGHT_MAX_PX 1024.0
#define LABEL_PX 92.0     /* the physical addresses left of the rows */
#define PANEL_GAP_PX 40.0
#define TOP_PX 64.0       /* title and panel titles */

static const struct {
    const char *colour;
    const char *label;
} kind_style[KMM_PAGE_NR_KINDS] = {
    [KMM_PAGE_ABSENT] = { "#9e9e9e", "absent (no memory, kmm's own metadata)" },
    [KMM_PAGE_FREE] = { "#ffffff", "free (buddy lists)" },
    [KMM_PAGE_CACHED] = { "#c5e1a5", "free, in a per-thread cache" },
    [KMM_PAGE_RESERVED] = { "#795548", "reserved" },
    [KMM_PAGE_ALLOC] = { "#42a5f5", "page allocations" },
    [KMM_PAGE_SLAB] = { "#ff9800", "slabs" },
    [KMM_PAGE_KMALLOC] = { "#ffd54f", "kmm_malloc pages" },
    [KMM_PAGE_VMALLOC] = { "#ab47bc", "vmalloc frames" },
    [KMM_PAGE_META] = { "#546e7a", "metadata" },
    [KMM_PAGE_LEAKED] = { "#212121", "leaked slabs" },
    [KMM_PAGE_ZSMALLOC] = { "#26a69a", "zspages" },
    [KMM_PAGE_UNMAPPED_FREE] = { "#f8bbd0", "unmapped cache: free" },
    [KMM_PAGE_UNMAPPED] = { "#ec407a", "unmapped: in use" },
    [KMM_PAGE_SECRET] = { "#4a148c", "unmapped: secret memory" },
    [KMM_PAGE_EXECMEM] = { "#c0ca33", "unmapped: execmem" },
};

struct layout {
    size_t page_size;
    uint64_t first_pfn;         /* of row 0 */
    uint64_t pages;             /* drawn: rows x pages_per_row */
    uint64_t pages_per_row, pages_per_cell, cells_per_row, rows;
    uint64_t row_bytes;
    double cell_w, cell_h;
};

/* One scale for every panel: the largest memory decides. */
static void plan(struct layout *l, const struct kmm_page_stats *st, uint64_t end_bytes)
{
    l->page_size = st->page_size;
    l->row_bytes = KMM_UNMAPPED_REFILL_BYTES < st->page_size ? st->page_size : KMM_UNMAPPED_REFILL_BYTES;
    uint64_t start = st->area[0].start & ~(l->row_bytes - 1);
    while ((end_bytes - start + l->row_bytes - 1) / l->row_bytes > MAX_ROWS)
        l->row_bytes *= 2;
    start = st->area[0].start & ~(l->row_bytes - 1);
    l->first_pfn = start / st->page_size;
    l->rows = (end_bytes - start + l->row_bytes - 1) / l->row_bytes;
    l->pages_per_row = l->row_bytes / st->page_size;
    l->pages_per_cell = 1;
    while (l->pages_per_row / l->pages_per_cell > MAX_CELLS_PER_ROW)
        l->pages_per_cell *= 2;
    l->cells_per_row = l->pages_per_row / l->pages_per_cell;
    l->pages = l->rows * l->pages_per_row;
    l->cell_w = GRID_WIDTH_PX / (double)l->cells_per_row;
    l->cell_h = l->cell_w < 4 ? 4 : l->cell_w;   /* a row of thin cells is still a row one can point at */
    if (l->cell_h * (double)l->rows > GRID_HEIGHT_MAX_PX)
        l->cell_h = GRID_HEIGHT_MAX_PX / (double)l->rows;
}

/* The kinds of a panel's pages, and what the panel's title says. */
static uint8_t *read_kinds(struct map_panel *p, const struct layout *l)
{
    uint8_t *kinds = malloc(l->pages);
    if (!kinds)
        return NULL;
    if (kmm_page_kinds(p->mm, l->first_pfn * l->page_size, l->pages, kinds) != l->pages) {
        free(kinds);
        errno = EINVAL;
        return NULL;
    }
    memset(p->count, 0, sizeof(p->count));
    p->pages = 0;
    p->splits = 0;
    size_t ranges = 0;
    for (uint64_t i = 0; i < l->pages; i++) {
        unsigned k = kinds[i] & ~KMM_PAGE_UNMAPPED_BIT;
        p->count[k < KMM_PAGE_NR_KINDS ? k : KMM_PAGE_ABSENT]++;
        if (kinds[i] == KMM_PAGE_ABSENT)
            continue;
        p->pages++;
        if (i == 0 || kinds[i - 1] == KMM_PAGE_ABSENT)
            ranges++;
        else if ((kinds[i] ^ kinds[i - 1]) & KMM_PAGE_UNMAPPED_BIT)
            p->splits++;
    }
    /* a range of memory is one mapping; every split point adds one */
    p->mappings_seen = ranges + p->splits;
    struct kmm_unmapped_stats us;
    kmm_unmapped_stats(p->mm, &us);
    p->mappings = us.direct_map_mappings;
    return kinds;
}

static void put_escaped(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '&')
            fputs("&amp;", f);
        else if (*s == '<')
            fputs("&lt;", f);
        else if (*s == '>')
            fputs("&gt;", f);
        else
            fputc(*s, f);
    }
}

/* The kind a cell shows (its majority) and whether its pages differ. */
static unsigned cell_kind(const uint8_t *kinds, uint64_t n, bool *mixed)
{
    size_t count[KMM_PAGE_NR_KINDS] = { 0 };
    unsigned best = kinds[0] & ~KMM_PAGE_UNMAPPED_BIT;
    *mixed = false;
    for (uint64_t i = 0; i < n; i++) {
        unsigned k = kinds[i] & ~KMM_PAGE_UNMAPPED_BIT;
        if (k >= KMM_PAGE_NR_KINDS)
            k = KMM_PAGE_ABSENT;
        if (kinds[i] != kinds[0])
            *mixed = true;
        if (++count[k] > count[best])
            best = k;
    }
    return best < KMM_PAGE_NR_KINDS ? best : KMM_PAGE_ABSENT;
}

static void draw_panel(FILE *f, const struct map_panel *p, const uint8_t *kinds, const struct layout *l, double x0,
                       double y0)
{
    fprintf(f, "<g transform=\"translate(%.1f,%.1f)\">\n<text x=\"0\" y=\"-8\" font-weight=\"bold\">", x0, y0);
    put_escaped(f, p->label);
    fprintf(f, ": %zu split points in the direct map (%zu mappings; kmm_unmapped_stats: %zu)</text>\n", p->splits,
            p->mappings_seen, p->mappings);
    double gx = LABEL_PX, grid_h = l->cell_h * (double)l->rows;
    fprintf(f, "<rect x=\"%.1f\" y=\"0\" width=\"%.1f\" height=\"%.2f\" fill=\"none\" stroke=\"#424242\"/>\n", gx - 0.5,
            GRID_WIDTH_PX + 1, grid_h);
    unsigned label_every = l->rows <= 32 ? 1 : (unsigned)((l->rows + 31) / 32);
    for (uint64_t r = 0; r < l->rows; r += label_every)
        fprintf(f, "<text x=\"0\" y=\"%.2f\" font-size=\"10\">%#011llx</text>\n", (double)r * l->cell_h + 9,
                (unsigned long long)((l->first_pfn + r * l->pages_per_row) * l->page_size));

    /* runs of cells of one kind in a row: one rect each; mixed cells hatched over them */
    unsigned cell[MAX_CELLS_PER_ROW + 1];
    bool mixed[MAX_CELLS_PER_ROW];
    for (uint64_t r = 0; r < l->rows; r++) {
        double y = (double)r * l->cell_h;
        const uint8_t *row = kinds + r * l->pages_per_row;
        for (uint64_t c = 0; c < l->cells_per_row; c++)
            cell[c] = cell_kind(row + c * l->pages_per_cell, l->pages_per_cell, &mixed[c]);
        cell[l->cells_per_row] = KMM_PAGE_NR_KINDS;   /* ends the last run */
        for (uint64_t start = 0, c = 1; c <= l->cells_per_row; c++) {
            if (cell[c] == cell[start])
                continue;
            fprintf(f, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"%s\"/>\n",
                    gx + (double)start * l->cell_w, y, (double)(c - start) * l->cell_w, l->cell_h,
                    kind_style[cell[start]].colour);
            start = c;
        }
        for (uint64_t c = 0; l->pages_per_cell > 1 && c < l->cells_per_row; c++)
            if (mixed[c])
                fprintf(f, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"url(#mixed)\"/>\n",
                        gx + (double)c * l->cell_w, y, l->cell_w, l->cell_h);
    }
    /* split points: at the page boundary itself, even inside a cell */
    double page_w = GRID_WIDTH_PX / (double)l->pages_per_row;
    for (uint64_t i = 1; i < l->pages; i++) {
        if (kinds[i] == KMM_PAGE_ABSENT || kinds[i - 1] == KMM_PAGE_ABSENT ||
            !((kinds[i] ^ kinds[i - 1]) & KMM_PAGE_UNMAPPED_BIT))
            continue;
        uint64_t r = i / l->pages_per_row, col = i % l->pages_per_row;
        double x = gx + (double)col * page_w;
        fprintf(f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#ff0000\" stroke-width=\"1.5\"/>\n", x,
                (double)r * l->cell_h - 1, x, (double)(r + 1) * l->cell_h + 1);
    }
    fprintf(f, "</g>\n");
}

int map_write_svg(const char *path, const char *title, struct map_panel *panels, unsigned n, struct map_geometry *geo)
{
    struct layout l = { 0 };
    struct kmm_page_stats st, largest = { 0 };
    uint64_t end = 0;
    size_t page_size = 0;
    for (unsigned i = 0; i < n; i++) {
        kmm_page_stats(panels[i].mm, &st);
        if (i > 0 && st.page_size != page_size) {
            errno = EINVAL;   /* one scale needs one page size */
            return -1;
        }
        page_size = st.page_size;
        if (st.area[st.nr_areas - 1].end > end) {
            end = st.area[st.nr_areas - 1].end;
            largest = st;
        }
    }
    if (!n) {
        errno = EINVAL;
        return -1;
    }
    plan(&l, &largest, end);
    uint8_t **kinds = calloc(n, sizeof(*kinds));
    if (!kinds)
        return -1;
    int rc = -1;
    for (unsigned i = 0; i < n; i++)
        if (!(kinds[i] = read_kinds(&panels[i], &l)))
            goto out;
    FILE *f = fopen(path, "w");
    if (!f)
        goto out;

    double panel_w = LABEL_PX + GRID_WIDTH_PX + PANEL_GAP_PX, grid_h = l.cell_h * (double)l.rows;
    double legend_y = TOP_PX + grid_h + 32, legend_row = 18;
    double width = panel_w * n + 20, height = legend_y + legend_row * (KMM_PAGE_NR_KINDS / 2 + 3) + 20;
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
               "font-family=\"monospace\" font-size=\"12\">\n<title>",
            width, height, width, height);
    put_escaped(f, title);
    fprintf(f, "</title>\n<defs><pattern id=\"mixed\" width=\"4\" height=\"4\" patternUnits=\"userSpaceOnUse\" "
               "patternTransform=\"rotate(45)\"><line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"4\" stroke=\"#000000\" "
               "stroke-opacity=\"0.45\" stroke-width=\"1.5\"/></pattern></defs>\n"
               "<rect width=\"%.0f\" height=\"%.0f\" fill=\"#fafafa\"/>\n<text x=\"10\" y=\"22\" font-size=\"15\" "
               "font-weight=\"bold\">",
            width, height);
    put_escaped(f, title);
    fprintf(f, "</text>\n<text x=\"10\" y=\"40\">");
    fprintf(f, "pages of %zu bytes, %llu per cell; a row is ", l.page_size, (unsigned long long)l.pages_per_cell);
    print_size(f, l.row_bytes);
    fprintf(f, " (a large page of the direct map); red lines: the direct map split there</text>\n");
    for (unsigned i = 0; i < n; i++)
        draw_panel(f, &panels[i], kinds[i], &l, 10 + panel_w * i, TOP_PX);

    /* the legend: every kind, with its pages in each panel */
    fprintf(f, "<g id=\"legend\" transform=\"translate(10,%.1f)\">\n<text x=\"0\" y=\"0\" font-weight=\"bold\">legend "
               "(pages%s)</text>\n",
            legend_y, n > 1 ? " in each panel" : "");
    for (unsigned k = 0; k < KMM_PAGE_NR_KINDS; k++) {
        double x = (k % 2) * 520.0, y = legend_row * (k / 2 + 1);
        fprintf(f, "<rect x=\"%.0f\" y=\"%.0f\" width=\"14\" height=\"12\" fill=\"%s\" stroke=\"#424242\"/>"
                   "<text x=\"%.0f\" y=\"%.0f\">%s:",
                x, y - 10, kind_style[k].colour, x + 20, y, kind_style[k].label);
        for (unsigned i = 0; i < n; i++)
            fprintf(f, "%s %zu", i ? " /" : "", panels[i].count[k]);
        fprintf(f, "</text>\n");
    }
    double y = legend_row * (KMM_PAGE_NR_KINDS / 2 + 2);
    fprintf(f, "<line x1=\"0\" y1=\"%.0f\" x2=\"14\" y2=\"%.0f\" stroke=\"#ff0000\" stroke-width=\"2\"/>"
               "<text x=\"20\" y=\"%.0f\">split point of the direct map (a page in it beside one out of it)</text>\n"
               "<rect x=\"520\" y=\"%.0f\" width=\"14\" height=\"12\" fill=\"url(#mixed)\" stroke=\"#424242\"/>"
               "<text x=\"540\" y=\"%.0f\">hatched: a cell whose pages are of several kinds (colour: the most)</text>\n"
               "</g>\n</svg>\n",
            y - 4, y - 4, y, y - 10, y);
    rc = ferror(f) ? -1 : 0;
    if (fclose(f) != 0)
        rc = -1;
    if (geo)
        *geo = (struct map_geometry){ .page_size = l.page_size, .pages_per_cell = (size_t)l.pages_per_cell,
                                      .row_bytes = l.row_bytes, .rows = (size_t)l.rows };
out:
    for (unsigned i = 0; i < n; i++)
        free(kinds[i]);
    free(kinds);
    return rc;
}
