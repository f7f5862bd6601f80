// Unit tests of C++'s operator new and delete on libkmm-malloc, linked
// directly with it: plain, array, sized, aligned and nothrow forms; a failing
// new calls the new-handler (which may make room) and retries, throws
// std::bad_alloc when there is none, and the nothrow forms return nullptr.
// Every pointer new gives must be the shim's (malloc_usable_size accepts only
// kmm's pointers, and aborts on any other).
#include <malloc.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include <kmm/shim.h>

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (!(cond)) {                                                                \
            std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            std::exit(1);                                                             \
        }                                                                             \
    } while (0)

namespace {

volatile std::size_t huge_size = SIZE_MAX / 2;   // run-time: no compiler folding

struct alignas(256) Wide {
    unsigned char bytes[300];
};

struct alignas(8192) Paged {   // aligned above the page: the large path
    unsigned char bytes[100];
};

int handler_calls;
void *reserve;   // what the handler gives back

void release_reserve()
{
    handler_calls++;
    std::free(reserve);
    reserve = nullptr;
    std::set_new_handler(nullptr);   // next failure: throw
}

void test_plain_and_array()
{
    for (std::size_t n : { 0ul, 1ul, 16ul, 100ul, 4095ul, 4096ul, 4097ul, 100000ul }) {
        char *p = static_cast<char *>(::operator new(n));
        CHECK(p != nullptr && malloc_usable_size(p) >= n);
        std::memset(p, 1, n);
        ::operator delete(p);
        char *a = new char[n + 1];
        CHECK(malloc_usable_size(a) >= n + 1);
        std::memset(a, 2, n + 1);
        delete[] a;
        p = static_cast<char *>(::operator new(n));
        ::operator delete(p, n);   // sized
        a = static_cast<char *>(::operator new[](n));
        ::operator delete[](a, n);
    }
    std::vector<std::string> v;
    for (int i = 0; i < 10000; i++)
        v.push_back(std::string(static_cast<std::size_t>(i % 100), 'x'));
    CHECK(v[9999].size() == 99);
}

void test_aligned()
{
    for (int i = 0; i < 64; i++) {
        Wide *w = new Wide;
        CHECK(reinterpret_cast<std::uintptr_t>(w) % 256 == 0);
        CHECK(malloc_usable_size(w) >= sizeof(Wide));
        delete w;   // sized aligned delete
        Wide *ws = new Wide[3];
        CHECK(reinterpret_cast<std::uintptr_t>(ws) % 256 == 0);
        delete[] ws;
        Paged *p = new Paged;
        CHECK(reinterpret_cast<std::uintptr_t>(p) % 8192 == 0);
        delete p;
    }
    for (std::size_t align = 1; align <= (1u << 21); align *= 2) {
        void *p = ::operator new(1000, std::align_val_t(align));
        CHECK(reinterpret_cast<std::uintptr_t>(p) % align == 0);
        ::operator delete(p, std::align_val_t(align));
        p = ::operator new[](1000, std::align_val_t(align), std::nothrow);
        CHECK(p && reinterpret_cast<std::uintptr_t>(p) % align == 0);
        ::operator delete[](p, std::align_val_t(align), std::nothrow);
        p = ::operator new(3000, std::align_val_t(align));
        ::operator delete(p, 3000, std::align_val_t(align));
    }
}

void test_nothrow_returns_null()
{
    CHECK(::operator new(huge_size, std::nothrow) == nullptr);
    CHECK(::operator new[](huge_size, std::nothrow) == nullptr);
    CHECK(::operator new(huge_size, std::align_val_t(64), std::nothrow) == nullptr);
    CHECK(::operator new[](huge_size, std::align_val_t(4096), std::nothrow) == nullptr);
    void *p = ::operator new(10, std::nothrow);
    CHECK(p != nullptr);
    ::operator delete(p, std::nothrow);
}

void test_bad_alloc_thrown()
{
    int thrown = 0;
    try {
        void *p = ::operator new(huge_size);
        ::operator delete(p);
    } catch (const std::bad_alloc &) {
        thrown++;
    }
    try {
        void *p = ::operator new[](huge_size, std::align_val_t(128));
        ::operator delete[](p, std::align_val_t(128));
    } catch (const std::bad_alloc &) {
        thrown++;
    }
    try {
        std::vector<char> v(huge_size);
        CHECK(v.empty());
    } catch (const std::bad_alloc &) {
        thrown++;
    } catch (const std::length_error &) {
        thrown++;   // libstdc++ may refuse the size before asking
    }
    CHECK(thrown == 3);
}

void test_new_handler_called()
{
    // The handler makes room and uninstalls itself: new retries once more,
    // still fails (the size is impossible), and throws.
    reserve = std::malloc(1000);
    handler_calls = 0;
    std::set_new_handler(release_reserve);
    bool thrown = false;
    try {
        void *p = ::operator new(huge_size);
        ::operator delete(p);
    } catch (const std::bad_alloc &) {
        thrown = true;
    }
    CHECK(thrown);
    CHECK(handler_calls == 1);
    CHECK(reserve == nullptr);
    // A handler that throws its own exception: it comes out of new.
    struct Out {};
    std::set_new_handler([] { throw Out(); });
    bool out = false;
    try {
        void *p = ::operator new(huge_size, std::align_val_t(64));
        ::operator delete(p);
    } catch (const Out &) {
        out = true;
    }
    CHECK(out);
    std::set_new_handler(nullptr);
}

}  // namespace

int main()
{
    test_plain_and_array();
    test_aligned();
    test_nothrow_returns_null();
    test_bad_alloc_thrown();
    test_new_handler_called();
    std::printf("test_shim_new: new and delete in all forms, nothrow, bad_alloc and the new-handler as the standard says\n");
    return 0;
}
