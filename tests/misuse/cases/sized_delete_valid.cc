// Valid sized and aligned deletes, small and large, and the sizes in
// between that share a size class: none may be reported.
#include "../case.h"
#include <new>

struct alignas(64) line {
    char bytes[64];
};

int main()
{
    static const size_t sizes[] = {1, 8, 13, 16, 24, 100, 1000, 4000, 4096, 5000, LARGE_SIZE, LARGE_SIZE + 1};
    static const size_t aligns[] = {32, 64, 4096, 8192};
    for (size_t size : sizes) {
        void *p = ::operator new(size);
        ::operator delete(p, size);
        for (size_t align : aligns) {
            void *q = ::operator new(size, std::align_val_t(align));
            ::operator delete(q, size, std::align_val_t(align));
        }
    }
    line *l = new line;
    delete l;
    line *ls = new line[3];
    delete[] ls;
    return 0;
}
