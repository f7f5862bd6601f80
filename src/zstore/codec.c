/* codec.c - LZ4 and zstd for the compressed page store, with every byte of
 * their state in kmm's metadata memory (no malloc inside the libraries).
 *
 * LZ4 compresses with LZ4_compress_fast_extState on a state of
 * LZ4_sizeofState() bytes and decompresses with no state at all. zstd
 * compresses at zram's level (3) with a static CCtx whose workspace is the
 * estimate for that level and a page-sized input (the parameters zram uses,
 * so the window is no larger than a page), and decompresses with a static
 * DCtx. A context's block: header | state | output buffer, each part on a
 * 64-byte boundary.
 */
#include "zstore/zstore_internal.h"

#include <lz4.h>
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>

#include <string.h>

#define CTX_ALIGN 64

_Static_assert(ZCODEC_ZSTD_LEVEL == ZSTD_CLEVEL_DEFAULT, "zram's zstd level is zstd's default");

static size_t align_up(size_t v) { return (v + CTX_ALIGN - 1) & ~(size_t)(CTX_ALIGN - 1); }

enum zcodec_algo kmm__zcodec_parse(const char *name)
{
    if (!name || !strcmp(name, "lz4"))
        return ZCODEC_LZ4;
    if (!strcmp(name, "zstd"))
        return ZCODEC_ZSTD;
    return ZCODEC_NONE;
}

const char *kmm__zcodec_name(enum zcodec_algo algo)
{
    return algo == ZCODEC_ZSTD ? "zstd" : "lz4";
}

bool kmm__zcodec_needs_dctx(enum zcodec_algo algo)
{
    return algo == ZCODEC_ZSTD;
}

static size_t state_bytes(enum zcodec_algo algo, size_t page_size, bool decompress)
{
    if (algo == ZCODEC_LZ4)
        return decompress ? 0 : (size_t)LZ4_sizeofState();
    if (decompress)
        return ZSTD_estimateDCtxSize();
    return ZSTD_estimateCCtxSize_usingCParams(ZSTD_getCParams(ZCODEC_ZSTD_LEVEL, page_size, 0));
}

static size_t out_bytes(enum zcodec_algo algo, size_t page_size)
{
    return algo == ZCODEC_LZ4 ? (size_t)LZ4_compressBound((int)page_size) : ZSTD_compressBound(page_size);
}

struct zcodec_ctx *kmm__zcodec_new(struct kmm *mm, enum zcodec_algo algo, size_t page_size, bool decompress)
{
    size_t state = state_bytes(algo, page_size, decompress);
    size_t out = decompress ? 0 : out_bytes(algo, page_size);
    size_t state_off = align_up(sizeof(struct zcodec_ctx));
    size_t out_off = state_off + align_up(state);
    size_t bytes = out_off + out;
    unsigned char *block = kmm__meta_alloc(mm, bytes);
    if (!block)
        return NULL;
    struct zcodec_ctx *ctx = (struct zcodec_ctx *)(void *)block;
    ctx->bytes = bytes;
    ctx->state = state ? block + state_off : NULL;
    ctx->out = out ? block + out_off : NULL;
    ctx->out_len = out;
    if (algo == ZCODEC_ZSTD) {
        void *z = decompress ? (void *)ZSTD_initStaticDCtx(ctx->state, state)
                             : (void *)ZSTD_initStaticCCtx(ctx->state, state);
        if (!z) {   /* only a misaligned or short workspace: ours is neither */
            kmm__meta_free(mm, block, bytes);
            return NULL;
        }
        ctx->state = z;
    }
    return ctx;
}

void kmm__zcodec_free(struct kmm *mm, struct zcodec_ctx *ctx)
{
    if (ctx)
        kmm__meta_free(mm, ctx, ctx->bytes);
}

static KMM_NORETURN void codec_fatal(struct kmm *mm, const char *what, const char *why)
{
    struct kmm_msg m = { .len = 0 };
    kmm__msg_str(&m, "kmm: kmm_zstore_write: ");
    kmm__msg_str(&m, what);
    kmm__msg_str(&m, " failed: ");
    kmm__msg_str(&m, why);
    kmm__fatal(mm, &m);
}

size_t kmm__zcodec_compress(struct kmm *mm, enum zcodec_algo algo, struct zcodec_ctx *ctx, const void *page,
                            size_t page_size)
{
    if (algo == ZCODEC_LZ4) {
        int n = LZ4_compress_fast_extState(ctx->state, page, (char *)ctx->out, (int)page_size, (int)ctx->out_len, 1);
        if (n <= 0)
            codec_fatal(mm, "LZ4_compress_fast_extState", "no output into a buffer of LZ4_compressBound");
        return (size_t)n;
    }
    size_t n = ZSTD_compressCCtx(ctx->state, ctx->out, ctx->out_len, page, page_size, ZCODEC_ZSTD_LEVEL);
    if (ZSTD_isError(n))
        codec_fatal(mm, "ZSTD_compressCCtx", ZSTD_getErrorName(n));
    return n;
}

size_t kmm__zcodec_decompress(enum zcodec_algo algo, struct zcodec_ctx *ctx, const void *src, size_t len,
                              void *page, size_t page_size, const char **why)
{
    if (algo == ZCODEC_LZ4) {
        int n = LZ4_decompress_safe(src, page, (int)len, (int)page_size);
        if (n < 0) {
            *why = "LZ4_decompress_safe: malformed input";
            return 0;
        }
        return (size_t)n;
    }
    size_t n = ZSTD_decompressDCtx(ctx->state, page, page_size, src, len);
    if (ZSTD_isError(n)) {
        *why = ZSTD_getErrorName(n);
        return 0;
    }
    return n;
}
