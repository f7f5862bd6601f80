/* zstore_internal.h - the compressed page store's codecs (codec.c), for
 * store.c.
 *
 * A codec context is one block of kmm's metadata memory: its header, the
 * library's state (LZ4's extState, zstd's static CCtx or DCtx workspace)
 * and, for compression, the output buffer of a page's worst case. A
 * context is used by one thread at a time (store.c keeps the free ones on
 * a stack); the codec functions take no lock.
 */
#ifndef KMM_ZSTORE_INTERNAL_H
#define KMM_ZSTORE_INTERNAL_H

#include "internal.h"

enum zcodec_algo { ZCODEC_LZ4, ZCODEC_ZSTD, ZCODEC_NONE };

/* zram's default zstd level (ZSTD_CLEVEL_DEFAULT). */
#define ZCODEC_ZSTD_LEVEL 3

struct zcodec_ctx {
    struct zcodec_ctx *next;      /* on the store's free stack */
    size_t bytes;                 /* of the whole block, for kmm__meta_free */
    void *state;                  /* LZ4 extState; ZSTD_CCtx or ZSTD_DCtx */
    unsigned char *out;           /* compression only: out_len bytes */
    size_t out_len;
};

/* "lz4" -> ZCODEC_LZ4, "zstd" -> ZCODEC_ZSTD, else ZCODEC_NONE. */
KMM_HIDDEN enum zcodec_algo kmm__zcodec_parse(const char *name);
KMM_HIDDEN const char *kmm__zcodec_name(enum zcodec_algo algo);

/* Does algo need a context to decompress? (LZ4 does not.) */
KMM_HIDDEN bool kmm__zcodec_needs_dctx(enum zcodec_algo algo);

/* A new compression (decompress false) or decompression context for pages
 * of page_size bytes, in mm's metadata memory; NULL when out of memory
 * (a KMM_FAULT_META site). Not under a lock: may call meta_alloc. */
KMM_HIDDEN struct zcodec_ctx *kmm__zcodec_new(struct kmm *mm, enum zcodec_algo algo, size_t page_size, bool decompress);
KMM_HIDDEN void kmm__zcodec_free(struct kmm *mm, struct zcodec_ctx *ctx);

/* Compresses the page_size bytes at page into ctx->out; returns the
 * compressed length (1 .. ctx->out_len). Aborts if the library fails, which
 * the worst-case buffer rules out unless its workspace was sized wrong. */
KMM_HIDDEN size_t kmm__zcodec_compress(struct kmm *mm, enum zcodec_algo algo, struct zcodec_ctx *ctx,
                                       const void *page, size_t page_size);

/* Decompresses len bytes at src into page (page_size bytes); ctx is a
 * decompression context (NULL for LZ4). Returns the decompressed length,
 * or 0 when src is not a valid stream of at most page_size bytes; *why
 * says why. */
KMM_HIDDEN size_t kmm__zcodec_decompress(enum zcodec_algo algo, struct zcodec_ctx *ctx, const void *src,
                                         size_t len, void *page, size_t page_size, const char **why);

#endif
