// A large buffer given back with operator delete(p, size) naming half its
// size.
#include "../case.h"
#include <new>

int main()
{
    void *p = ::operator new(LARGE_SIZE);
    announce_misuse(p);
    ::operator delete(p, LARGE_SIZE / 2);
    return 0;
}
