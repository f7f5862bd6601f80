// An over-aligned small object given back with the right alignment but a
// size from another size class.
#include "../case.h"
#include <new>

int main()
{
    void *p = ::operator new(64, std::align_val_t(128));
    announce_misuse(p);
    ::operator delete(p, 1024, std::align_val_t(128));
    return 0;
}
