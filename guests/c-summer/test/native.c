/*
 * native.c: tests summer.c natively, under AddressSanitizer and UBSan,
 * through the very canonical-ABI glue that wit-bindgen generated for it.
 *
 * The host side is played here: the `__wasm_import_*` functions the glue
 * calls are an in-memory store and publisher (which can be told to fail),
 * and the exports are called as wasmtime calls them: arguments allocated for
 * the guest to own, results read from the return area, then the post-return
 * function that frees them. So a leak, double free or out-of-bounds read in
 * the guest's handling of its arguments, results or malformed documents
 * fails this test (LeakSanitizer runs at exit).
 *
 *   native CONFORMANCE_DIR     (see test.sh; exit status 0 iff every check passed)
 *
 * Checks: the CRC-64/XZ vectors and sums of the sandbox fixture, one call per
 * message and one batch giving the same result; every conformance fixture
 * fed raw (also the lines `weir test` refuses before any guest sees them)
 * with the outcome and message its expectations.tsv names, in both call
 * styles; every prefix of a valid chunk refused; single-byte mutations never
 * crash; stored sums that are malformed or of another stream; store and
 * publish failures; ACKs; a batch document out of range; deep nesting in an
 * ignored field; serde's array form of a chunk.
 */

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consumer.h"

#define P sizeof(void *)

static int failures, checks;

static void check(int ok, const char *fmt, ...) {
    checks++;
    if (ok) return;
    failures++;
    va_list args;
    va_start(args, fmt);
    fprintf(stderr, "FAIL: ");
    vfprintf(stderr, fmt, args);
    fprintf(stderr, "\n");
    va_end(args);
}

/* ---- The host's side of the imports ------------------------------------- */

typedef struct {
    uint8_t key[64];
    size_t key_len;
    uint8_t *value;
    size_t value_len;
} kv_t;

static kv_t store[1024];
static size_t stored;
static int fail_get, fail_put, fail_publish, puts_seen;
static char published[64][256];
static size_t publish_count;

/* A list the guest will own: allocated as cabi_realloc would (an empty list
 * is not allocated and the guest must not free it). */
static uint8_t *give(const void *bytes, size_t n) {
    if (!n) return (uint8_t *)1;
    uint8_t *p = malloc(n);
    memcpy(p, bytes, n);
    return p;
}

static void error_result(uint8_t *ret, uint8_t tag, const char *what) {
    ret[0] = 1;
    ret[P] = tag;
    *(uint8_t **)(ret + 2 * P) = give(what, strlen(what));
    *(size_t *)(ret + 3 * P) = strlen(what);
}

static kv_t *find(const uint8_t *key, size_t len) {
    for (size_t i = 0; i < stored; i++)
        if (store[i].key_len == len && !memcmp(store[i].key, key, len)) return &store[i];
    return NULL;
}

static void store_set(const uint8_t *key, size_t key_len, const void *value, size_t value_len) {
    kv_t *e = find(key, key_len);
    if (!e) {
        e = &store[stored++];
        memcpy(e->key, key, key_len);
        e->key_len = key_len;
    } else {
        free(e->value);
    }
    e->value = malloc(value_len + 1);
    memcpy(e->value, value, value_len);
    e->value[value_len] = 0; /* for the checks' strstr */
    e->value_len = value_len;
}

static void store_text(const uint8_t *key16, const char *value) { store_set(key16, 16, value, strlen(value)); }

static void reset_host(void) {
    for (size_t i = 0; i < stored; i++) free(store[i].value);
    stored = 0;
    publish_count = 0;
    puts_seen = 0;
    fail_get = fail_put = fail_publish = 0;
}

void __wasm_import_weir_guest_store_get(uint8_t *key, size_t len, uint8_t *ret) {
    if (fail_get) return error_result(ret, 1, "down");
    kv_t *e = find(key, len);
    ret[0] = 0;
    ret[P] = e != NULL;
    if (e) {
        *(uint8_t **)(ret + 2 * P) = give(e->value, e->value_len);
        *(size_t *)(ret + 3 * P) = e->value_len;
    }
}

void __wasm_import_weir_guest_store_put(uint8_t *key, size_t key_len, uint8_t *value, size_t value_len, uint8_t *ret) {
    puts_seen++;
    if (fail_put) return error_result(ret, 0, "value too large");
    store_set(key, key_len, value, value_len);
    ret[0] = 0;
}

/* The summer never reads several keys at once, deletes or scans: being
 * called is a failure. */
void __wasm_import_weir_guest_store_get_many(uint8_t *keys, size_t len, uint8_t *ret) {
    (void)keys, (void)len, (void)ret;
    abort();
}

void __wasm_import_weir_guest_store_delete(uint8_t *key, size_t len, uint8_t *ret) {
    (void)key, (void)len, (void)ret;
    abort();
}

void __wasm_import_weir_guest_store_scan(uint8_t *a, size_t b, uint8_t *c, size_t d, int32_t e, uint8_t *ret) {
    (void)a, (void)b, (void)c, (void)d, (void)e, (void)ret;
    abort();
}

void __wasm_import_weir_guest_publisher_publish(uint8_t *journal, size_t journal_len, uint8_t *doc, size_t doc_len,
                                                uint8_t *ret) {
    if (fail_publish) return error_result(ret, 1, "examples/stream-sum/sums");
    check(journal_len == 24 && !memcmp(journal, "examples/stream-sum/sums", 24), "published to the wrong journal");
    if (publish_count < 64 && doc_len < 256) {
        memcpy(published[publish_count], doc, doc_len);
        published[publish_count][doc_len] = 0;
    }
    publish_count++;
    ret[0] = 0;
}

void __wasm_import_weir_guest_log_log(int32_t level, uint8_t *message, size_t len) {
    (void)level, (void)message, (void)len;
}

/* Normally in consumer_component_type.o, a wasm object. */
void __component_type_object_force_link_consumer(void) {}

/* ---- Calling the exports as the host does -------------------------------- */

uint8_t *__wasm_export_exports_consumer_consume_message(uint8_t *, size_t, int64_t, int64_t, int64_t, int64_t,
                                                        int32_t, uint8_t *, size_t, uint8_t *, size_t);
void __wasm_export_exports_consumer_consume_message_post_return(uint8_t *);
/* A batch flattens to more than 16 values: its fields come in memory. */
uint8_t *__wasm_export_exports_consumer_consume_messages(uint8_t *);
void __wasm_export_exports_consumer_consume_messages_post_return(uint8_t *);
uint8_t *__wasm_export_exports_consumer_finalize_txn(void);
void __wasm_export_exports_consumer_finalize_txn_post_return(uint8_t *);

#define JOURNAL "test/input"
#define CONTENT_TYPE "application/x-ndjson"

/* The error text of a result<_, string> return area (NULL if ok), copied
 * before the post-return frees it. */
static char *string_result(uint8_t *ret, size_t at) {
    if (!ret[0]) return NULL;
    size_t len = *(size_t *)(ret + at + P);
    char *copy = malloc(len + 1);
    memcpy(copy, *(uint8_t **)(ret + at), len);
    copy[len] = 0;
    return copy;
}

static char *consume(const void *doc, size_t len, uint16_t flags, int64_t begin) {
    uint8_t *ret = __wasm_export_exports_consumer_consume_message(
        give(JOURNAL, strlen(JOURNAL)), strlen(JOURNAL), begin, begin + (int64_t)len + 1, 7, 99, flags,
        give(CONTENT_TYPE, strlen(CONTENT_TYPE)), strlen(CONTENT_TYPE), give(doc, len), len);
    char *err = string_result(ret, P);
    __wasm_export_exports_consumer_consume_message_post_return(ret);
    return err;
}

typedef struct {
    const char *doc;
    size_t len;
    uint16_t flags;
} msg_t;

/* A list of n elements of size `size` for the guest to own (a dangling,
 * aligned pointer when empty, as wasmtime gives). */
static uint8_t *give_list(const void *elems, size_t n, size_t size) {
    if (!n) return (uint8_t *)size;
    return give(elems, n * size);
}

/* How a test batch breaks the host's promises. */
typedef enum { WELL_FORMED, LAST_DOC_OUTSIDE, FLAGS_SHORT } corruption_t;

/* One consume-messages call; *index gets the failed message's index. */
static char *consume_batch(const msg_t *msgs, size_t n, uint32_t *index, corruption_t corrupt) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += msgs[i].len;
    uint8_t *docs = malloc(total ? total : 1);
    size_t cap = n ? n : 1;
    uint32_t *doc_ends = malloc(cap * sizeof *doc_ends);
    int64_t *begins = malloc(cap * sizeof *begins), *ends = malloc(cap * sizeof *ends);
    uint64_t *producers = malloc(cap * sizeof *producers), *clocks = malloc(cap * sizeof *clocks);
    uint16_t *flags = malloc(cap * sizeof *flags);
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(docs + at, msgs[i].doc, msgs[i].len);
        begins[i] = (int64_t)at;
        ends[i] = (int64_t)(at + msgs[i].len + 1);
        producers[i] = 7;
        clocks[i] = 99 + i;
        flags[i] = msgs[i].flags;
        at += msgs[i].len;
        doc_ends[i] = (uint32_t)at;
    }
    if (corrupt == LAST_DOC_OUTSIDE && n) doc_ends[n - 1] = (uint32_t)total + 1;
    size_t flags_len = corrupt == FLAGS_SHORT && n ? n - 1 : n;
    /* The batch record, field by field: (pointer, length) of each list. */
    uint8_t *arg = malloc(18 * P);
    const uint8_t *fields[9] = {
        give(JOURNAL, strlen(JOURNAL)),  give(CONTENT_TYPE, strlen(CONTENT_TYPE)),
        give_list(docs, total, 1),       give_list(doc_ends, n, sizeof *doc_ends),
        give_list(begins, n, 8),         give_list(ends, n, 8),
        give_list(producers, n, 8),      give_list(clocks, n, 8),
        give_list(flags, flags_len, sizeof *flags),
    };
    const size_t lens[9] = {strlen(JOURNAL), strlen(CONTENT_TYPE), total, n, n, n, n, n, flags_len};
    for (int f = 0; f < 9; f++) {
        *(const uint8_t **)(arg + 2 * f * P) = fields[f];
        *(size_t *)(arg + (2 * f + 1) * P) = lens[f];
    }
    free(docs);
    free(doc_ends);
    free(begins);
    free(ends);
    free(producers);
    free(clocks);
    free(flags);
    uint8_t *ret = __wasm_export_exports_consumer_consume_messages(arg);
    char *err = string_result(ret, 2 * P);
    if (err) *index = (uint32_t) * (int32_t *)(ret + P);
    __wasm_export_exports_consumer_consume_messages_post_return(ret);
    return err;
}

static char *finalize(void) {
    uint8_t *ret = __wasm_export_exports_consumer_finalize_txn();
    char *err = string_result(ret, P);
    __wasm_export_exports_consumer_finalize_txn_post_return(ret);
    return err;
}

static int contains(const char *haystack, const char *needle) { return haystack && strstr(haystack, needle); }

/* ---- Fixtures -------------------------------------------------------------- */

typedef struct {
    char *text;
    msg_t lines[64];
    size_t count;
} file_t;

static int read_lines(const char *path, file_t *f) {
    FILE *in = fopen(path, "rb");
    if (!in) return 0;
    f->text = malloc(1 << 16);
    size_t n = fread(f->text, 1, (1 << 16) - 1, in);
    fclose(in);
    f->text[n] = 0;
    f->count = 0;
    for (char *line = f->text; *line && f->count < 64;) {
        char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        if (len) f->lines[f->count++] = (msg_t){line, len, 0};
        line += len + (nl != NULL);
    }
    return 1;
}

static const char *ID1 = "[1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]";

static void chunk(char *out, const char *id, int seq, const char *data) {
    if (data)
        sprintf(out, "{\"ID\":%s,\"SeqNo\":%d,\"Data\":\"%s\"}", id, seq, data);
    else
        sprintf(out, "{\"ID\":%s,\"SeqNo\":%d,\"Data\":null}", id, seq);
}

static void test_vectors_and_sandbox(const char *dir) {
    char a[128], b[128], c[128];
    reset_host();
    chunk(a, ID1, 1, "YmF0dGVyeQ==");   /* "battery" */
    chunk(b, ID1, 2, "IGhvcnNl");       /* " horse" */
    chunk(c, ID1, 3, NULL);
    check(!consume(a, strlen(a), 0, 0), "battery");
    check(!finalize(), "finalize 1");
    check(stored == 1 && contains((char *)store[0].value, "\"SeqNo\":1,\"Value\":3163039619087867012}"),
          "crc64(\"battery\") = 0x2be55fc66a381c84 stored after finalize");
    check(!consume(b, strlen(b), 0, 100) && !consume(c, strlen(c), 0, 200), "horse + final");
    check(publish_count == 1 && !strcmp(published[0], "{\"ID\":[1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],\"SeqNo\":3,"
                                                      "\"Value\":12571289327815438038}"),
          "crc64(\"battery horse\") = 0xae763109c1192ed6 published, got %s", published[0]);
    check(!finalize(), "finalize 2");

    /* The sandbox fixture, one call per message and as one batch: same sums. */
    char path[512];
    snprintf(path, sizeof path, "%s/../sandbox/chunks.jsonl", dir);
    file_t f;
    if (!read_lines(path, &f)) {
        check(0, "cannot read %s", path);
        return;
    }
    char single[8][256];
    reset_host();
    for (size_t i = 0; i < f.count; i++) check(!consume(f.lines[i].doc, f.lines[i].len, 0, (int64_t)i), "line %zu", i);
    check(!finalize(), "finalize sandbox");
    check(publish_count == 3, "3 sums published, got %zu", publish_count);
    for (size_t i = 0; i < 3; i++) strcpy(single[i], published[i]);
    check(!strcmp(single[1], "{\"ID\":[2,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],\"SeqNo\":4,\"Value\":184872179346299102}"),
          "sum of stream 2 as in chunks.expected.jsonl");
    reset_host();
    uint32_t index;
    check(!consume_batch(f.lines, f.count, &index, WELL_FORMED), "sandbox batch");
    check(!finalize(), "finalize sandbox batch");
    check(publish_count == 3 && stored == 4, "batch: 3 sums, 4 stored");
    for (size_t i = 0; i < 3; i++) check(!strcmp(single[i], published[i]), "batch sum %zu differs", i);
    free(f.text);
}

static void test_conformance(const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/expectations.tsv", dir);
    FILE *in = fopen(path, "r");
    if (!in) {
        check(0, "cannot read %s", path);
        return;
    }
    char row[512];
    int cases = 0;
    while (fgets(row, sizeof row, in)) {
        if (row[0] == '#' || row[0] == '\n') continue;
        row[strcspn(row, "\n")] = 0;
        char *name = strtok(row, "\t"), *outcome = strtok(NULL, "\t"), *message = strtok(NULL, "\t");
        if (!message) message = "";
        snprintf(path, sizeof path, "%s/%s.jsonl", dir, name);
        file_t f;
        if (!read_lines(path, &f)) {
            check(0, "cannot read %s", path);
            continue;
        }
        cases++;
        int ok = !strcmp(outcome, "ok");
        /* One call per message. */
        reset_host();
        char *err = NULL;
        size_t failed_at = f.count;
        /* Offsets as consume_batch gives them, so the messages compare. */
        int64_t begin = 0;
        for (size_t i = 0; i < f.count && !err; i++) {
            err = consume(f.lines[i].doc, f.lines[i].len, 0, begin);
            begin += (int64_t)f.lines[i].len;
            if (err) failed_at = i;
        }
        if (ok) {
            check(!err, "%s: unexpected error %s", name, err);
            check(!finalize(), "%s: finalize", name);
        } else {
            check(err && failed_at == f.count - 1, "%s: expected an error on the last line", name);
            check(contains(err, message), "%s: error \"%s\" lacks \"%s\"", name, err, message);
            free(finalize()); /* empties the cache for the next case */
        }
        /* One batch: the same outcome, the same message, the right index. */
        reset_host();
        uint32_t index = UINT32_MAX;
        char *batch_err = consume_batch(f.lines, f.count, &index, WELL_FORMED);
        if (ok) {
            check(!batch_err, "%s: batch error %s", name, batch_err);
            check(!finalize(), "%s: finalize", name);
        } else {
            check(batch_err && index == f.count - 1, "%s: batch error index %u", name, index);
            check(err && batch_err && !strcmp(err, batch_err), "%s: batch says \"%s\", single \"%s\"", name,
                  batch_err, err);
            free(finalize());
        }
        free(err);
        free(batch_err);
        free(f.text);
    }
    fclose(in);
    check(cases >= 40, "only %d conformance cases", cases);
}

static void test_prefixes_and_mutations(void) {
    const char *doc = "{\"UUID\":\"9f2c9a4e-1d1e-11ef-8000-0123456789ab\",\"ID\":[7,1,2,3,4,5,6,7,8,9,10,11,12,13,14,"
                      "255],\"X\":[{\"a\":\"\\u00e9\"},-1.5e3,true],\"SeqNo\":1,\"Data\":\"YmF0\\/GVyeQ==\"}";
    size_t len = strlen(doc);
    reset_host();
    check(!consume(doc, len, 0, 0), "the mutation seed is valid");
    free(finalize());
    for (size_t cut = 0; cut < len; cut++) {
        reset_host();
        char *err = consume(doc, cut, 0, 0);
        check(err != NULL, "prefix of %zu bytes accepted", cut);
        free(err);
        free(finalize());
    }
    static const uint8_t bytes[] = {0, '"', '\\', '[', ']', '{', '}', ',', ':', '-', '0', '9', 'e', '.', '=',
                                    'A', ' ', 0x7f, 0x80, 0xc3, 0xed, 0xff};
    char *copy = malloc(len);
    for (size_t at = 0; at < len; at++) {
        for (size_t k = 0; k < sizeof bytes; k++) {
            memcpy(copy, doc, len);
            copy[at] = (char)bytes[k];
            reset_host();
            free(consume(copy, len, 0, 0));
            free(finalize());
        }
    }
    free(copy);
    checks++;
}

static void test_store_and_publish(void) {
    char a[160];
    uint8_t key1[16] = {1};
    char *err;

    reset_host();
    store_text(key1, "{\"ID\":[1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],\"SeqNo\":1");
    chunk(a, ID1, 2, "eA==");
    err = consume(a, strlen(a), 0, 5);
    check(contains(err, "stored sum of stream 01000000000000000000000000000000: malformed sum: EOF while parsing") &&
              contains(err, " at test/input@5"),
          "malformed stored sum: %s", err);
    free(err);
    free(finalize());

    reset_host();
    store_text(key1, "{\"ID\":[2,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],\"SeqNo\":1,\"Value\":5}");
    err = consume(a, strlen(a), 0, 5);
    check(contains(err, "invalid chunk.ID: stored sum under key 01000000000000000000000000000000 is for stream "
                        "02000000000000000000000000000000"),
          "stored sum of another stream: %s", err);
    free(err);
    free(finalize());

    /* A stored sum continues, whatever its field order and spacing. */
    reset_host();
    store_text(key1, " {\"Value\":3163039619087867012, \"ID\":[1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0],\"SeqNo\":1} ");
    char b[128], c[128];
    chunk(b, ID1, 2, "IGhvcnNl");
    chunk(c, ID1, 3, NULL);
    check(!consume(b, strlen(b), 0, 0) && !consume(c, strlen(c), 0, 1), "continue a stored sum");
    check(publish_count == 1 && contains(published[0], "\"Value\":12571289327815438038"), "continued CRC");
    free(finalize());

    reset_host();
    fail_get = 1;
    chunk(a, ID1, 1, "eA==");
    err = consume(a, strlen(a), 0, 5);
    check(err && !strcmp(err, "loading the sum of stream 01000000000000000000000000000000: store failed: down"),
          "store get failure: %s", err);
    free(err);
    free(finalize());

    reset_host();
    fail_publish = 1;
    chunk(a, ID1, 1, NULL);
    err = consume(a, strlen(a), 0, 5);
    check(err && !strcmp(err, "publishing the sum of stream 01000000000000000000000000000000: journal not found: "
                              "examples/stream-sum/sums"),
          "publish failure: %s", err);
    free(err);
    free(finalize());

    reset_host();
    fail_put = 1;
    chunk(a, ID1, 1, "eA==");
    chunk(b, "[2,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]", 1, "eA==");
    check(!consume(a, strlen(a), 0, 0) && !consume(b, strlen(b), 0, 1), "two streams");
    err = finalize();
    check(contains(err, "storing the sum of stream ") && contains(err, ": store limit exceeded: value too large"),
          "store put failure: %s", err);
    free(err);
    fail_put = 0;
    puts_seen = 0;
    check(!finalize() && puts_seen == 0, "a failed finalize still empties the cache");

    /* Two hundred streams: the cache grows and every sum is stored. */
    reset_host();
    for (int s = 0; s < 200; s++) {
        char id[80];
        sprintf(id, "[%d,%d,0,0,0,0,0,0,0,0,0,0,0,0,0,9]", s % 256, s / 256);
        chunk(a, id, 1, "eA==");
        check(!consume(a, strlen(a), 0, s), "stream %d", s);
    }
    check(!finalize() && stored == 200, "200 sums stored, got %zu", stored);
}

static void test_acks_batches_and_oddities(void) {
    uint32_t index = 0;
    char *err;
    reset_host();
    check(!consume("not json", 8, 2, 0), "an ACK is ignored, whatever its document");
    char a[128];
    chunk(a, ID1, 1, "eA==");
    msg_t msgs[3] = {{"garbage", 7, 2}, {a, strlen(a), 0}, {a, strlen(a), 0}};
    err = consume_batch(msgs, 3, &index, WELL_FORMED);
    check(err && index == 2 && contains(err, "expected 2, got 1 (repeated) at test/input@"),
          "batch: ACK skipped, repeat refused at index 2: %u %s", index, err);
    free(err);
    free(finalize());

    reset_host();
    err = consume_batch(msgs + 1, 2, &index, LAST_DOC_OUTSIDE);
    check(err && index == 1 && contains(err, "the host sent a document outside the batch at test/input@"),
          "document outside the batch: %u %s", index, err);
    free(err);
    free(finalize());

    reset_host();
    err = consume_batch(msgs + 1, 2, &index, FLAGS_SHORT);
    check(err && index == 0 && contains(err, "the host sent a batch whose columns differ in length at test/input"),
          "columns of different lengths: %u %s", index, err);
    free(err);
    free(finalize());
    check(stored == 0, "nothing of a batch with columns of different lengths is consumed: %zu", stored);

    reset_host();
    check(!consume_batch(msgs, 0, &index, WELL_FORMED), "an empty batch");

    /* serde_json skips ignored values iteratively: deep nesting is fine. */
    size_t depth = 100000;
    char *deep = malloc(2 * depth + 200);
    size_t n = (size_t)sprintf(deep, "{\"ID\":%s,\"SeqNo\":1,\"Deep\":", ID1);
    memset(deep + n, '[', depth);
    memset(deep + n + depth, ']', depth);
    n += 2 * depth;
    n += (size_t)sprintf(deep + n, ",\"Data\":\"eA==\"}");
    reset_host();
    err = consume(deep, n, 0, 0);
    check(!err, "deep nesting in an ignored field: %s", err);
    free(err);
    free(finalize());
    deep[n - 17] = '}'; /* the last `]` closes with the wrong bracket */
    reset_host();
    err = consume(deep, n, 0, 0);
    check(contains(err, "expected `,` or `]`"), "mismatched bracket: %s", err);
    free(err);
    free(finalize());
    free(deep);

    /* serde's sequence form of a struct: [ID, SeqNo, Data?]. */
    reset_host();
    char seq[160];
    sprintf(seq, "[%s,1,\"eA==\"]", ID1);
    check(!consume(seq, strlen(seq), 0, 0), "array form with data");
    sprintf(seq, " [ %s , 2 ] ", ID1);
    check(!consume(seq, strlen(seq), 0, 1) && publish_count == 1, "array form, final chunk without Data");
    sprintf(seq, "[%s,1,null,4]", "[3,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]");
    err = consume(seq, strlen(seq), 0, 2);
    check(contains(err, "malformed chunk: trailing characters"), "array form, 4 elements: %s", err);
    free(err);
    sprintf(seq, "[%s]", "[3,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]");
    err = consume(seq, strlen(seq), 0, 2);
    check(contains(err, "malformed chunk: invalid length"), "array form, 1 element: %s", err);
    free(err);
    free(finalize());

    /* Large data: the decode buffer grows; the CRC's 8-byte path is taken. */
    size_t raw = 300000;
    char *big = malloc(raw / 3 * 4 + 200);
    n = (size_t)sprintf(big, "{\"ID\":%s,\"SeqNo\":1,\"Data\":\"", "[5,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]");
    for (size_t i = 0; i < raw / 3; i++) memcpy(big + n + 4 * i, "YWJj", 4); /* "abc" */
    n += raw / 3 * 4;
    n += (size_t)sprintf(big + n, "\"}");
    reset_host();
    err = consume(big, n, 0, 0);
    check(!err, "300 KB chunk: %s", err);
    free(err);
    check(!finalize() && stored == 1 && contains((char *)store[0].value, "\"SeqNo\":1,\"Value\":"), "big stored");
    free(big);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s CONFORMANCE_DIR\n", argv[0]);
        return 2;
    }
    test_vectors_and_sandbox(argv[1]);
    test_conformance(argv[1]);
    test_prefixes_and_mutations();
    test_store_and_publish();
    test_acks_batches_and_oddities();
    reset_host();
    printf("%d passed, %d failed\n", checks - failures, failures);
    return failures ? 1 : 0;
}
