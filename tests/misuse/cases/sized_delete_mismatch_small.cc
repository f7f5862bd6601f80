// A one-byte object deleted through a pointer to a 32-byte type: the sized
// delete tells the allocator 32 bytes.
#include "../case.h"
#include <cstdint>

struct four_words {
    uint64_t a, b, c, d;
};

int main()
{
    char *p = new char;
    four_words *wrong = reinterpret_cast<four_words *>(p);
    announce_misuse(p);
    delete wrong;
    return 0;
}
