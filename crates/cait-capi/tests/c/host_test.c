/* The C API from C on the host: every status a bad argument gets, then one image classified
 * from 8-bit pixels in both layouts, with its class-attention map and top three classes. Prints
 * `logits <hex bits>...`, `top1 N`, `attention <hex bits>...` and `top3 A B C` lines for the Rust
 * test to compare with cait-core, and exits non-zero on the first unexpected status.
 *
 *   host_test PACK.cait IMAGE.gray   (IMAGE: the model's C·H·W bytes, one channel here) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cait.h"

static int failures = 0;

static void expect(const char *what, int32_t got, int32_t want) {
    if (got != want) {
        fprintf(stderr, "%s: got %s, want %s\n", what, cait_status_name(got), cait_status_name(want));
        failures++;
    } else {
        printf("ok %s: %s\n", what, cait_status_name(got));
    }
}

static uint8_t *read_file(const char *path, size_t *len, size_t align) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(2); }
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = aligned_alloc(align, (*len + align - 1) / align * align);
    if (!buf || fread(buf, 1, *len, f) != *len) { perror(path); exit(2); }
    fclose(f);
    return buf;
}

static void print_logits(const float *logits, size_t n, size_t top1) {
    printf("logits");
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &logits[i], sizeof bits);
        printf(" %08x", bits);
    }
    printf("\ntop1 %zu\n", top1);
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: host_test PACK IMAGE\n"); return 2; }
    size_t pack_len, image_len, need = 0;
    uint8_t *pack = read_file(argv[1], &pack_len, 64);
    uint8_t *image = read_file(argv[2], &image_len, 4);

    /* Checking a pack in place; a corrupted or truncated one. */
    expect("check", cait_pack_check(pack, pack_len, &need), CAIT_OK);
    expect("check NULL", cait_pack_check(NULL, pack_len, &need), CAIT_NULL_POINTER);
    expect("check truncated", cait_pack_check(pack, pack_len - 1, NULL), CAIT_BAD_PACK);
    pack[pack_len / 2] ^= 0x40;
    expect("check corrupted", cait_pack_check(pack, pack_len, NULL), CAIT_BAD_PACK);
    pack[pack_len / 2] ^= 0x40;

    /* Binding: a workspace one byte short, misaligned, NULL; an uninitialised session. */
    uint8_t *workspace = aligned_alloc(16, need + 16);
    static cait_session session;
    float logits[64];
    size_t top1 = 0, n_in = 0, n_out = 0;
    expect("init short", cait_session_init(&session, pack, pack_len, workspace, need - 1), CAIT_WORKSPACE_TOO_SMALL);
    expect("run uninitialised", cait_run_pixels(&session, image, image_len, CAIT_LAYOUT_HWC, logits, 64, &top1), CAIT_NOT_INITIALIZED);
    expect("init misaligned", cait_session_init(&session, pack, pack_len, workspace + 1, need), CAIT_WORKSPACE_MISALIGNED);
    expect("init NULL", cait_session_init(&session, pack, pack_len, NULL, need), CAIT_NULL_POINTER);
    expect("init NULL session", cait_session_init(NULL, pack, pack_len, workspace, need), CAIT_NULL_POINTER);
    expect("init", cait_session_init(&session, pack, pack_len, workspace, need), CAIT_OK);
    expect("input len", cait_input_len(&session, &n_in), CAIT_OK);
    expect("logits len", cait_logits_len(&session, &n_out), CAIT_OK);
    if (n_in != image_len || n_out > 64) {
        fprintf(stderr, "input %zu (image %zu), logits %zu\n", n_in, image_len, n_out);
        return 1;
    }

    /* Running: wrong lengths, NULL buffers, an unknown layout. */
    expect("run short input", cait_run_pixels(&session, image, n_in - 1, CAIT_LAYOUT_HWC, logits, n_out, &top1), CAIT_INPUT_LENGTH);
    expect("run short logits", cait_run_pixels(&session, image, n_in, CAIT_LAYOUT_HWC, logits, n_out - 1, &top1), CAIT_LOGITS_LENGTH);
    expect("run NULL pixels", cait_run_pixels(&session, NULL, n_in, CAIT_LAYOUT_HWC, logits, n_out, &top1), CAIT_NULL_POINTER);
    expect("run NULL logits", cait_run_pixels(&session, image, n_in, CAIT_LAYOUT_HWC, NULL, n_out, &top1), CAIT_NULL_POINTER);
    expect("run bad layout", cait_run_pixels(&session, image, n_in, 7, logits, n_out, &top1), CAIT_BAD_ARGUMENT);
    expect("run NULL session", cait_run_pixels(NULL, image, n_in, CAIT_LAYOUT_HWC, logits, n_out, &top1), CAIT_NULL_POINTER);
    float *normalized = calloc(n_in, sizeof(float));
    expect("run normalized short", cait_run_normalized(&session, normalized, n_in - 1, logits, n_out, NULL), CAIT_INPUT_LENGTH);
    expect("unknown status name", strcmp(cait_status_name(12345), "CAIT_UNKNOWN_STATUS") == 0 ? CAIT_OK : -1, CAIT_OK);

    /* The image, as the camera gives it (one channel: HWC and CHW are the same bytes). */
    expect("run HWC", cait_run_pixels(&session, image, n_in, CAIT_LAYOUT_HWC, logits, n_out, &top1), CAIT_OK);
    print_logits(logits, n_out, top1);
    expect("run CHW", cait_run_pixels(&session, image, n_in, CAIT_LAYOUT_CHW, logits, n_out, &top1), CAIT_OK);
    print_logits(logits, n_out, top1);
    /* The same session again, on a zero normalized image. */
    expect("run normalized", cait_run_normalized(&session, normalized, n_in, logits, n_out, &top1), CAIT_OK);
    print_logits(logits, n_out, top1);

    /* The class-attention map of the image, and its top three classes. */
    size_t n_attn = 0, top3[3];
    expect("attention len", cait_attention_len(&session, &n_attn), CAIT_OK);
    float *attention = calloc(n_attn, sizeof(float));
    expect("attention buffer short", cait_set_attention_buffer(&session, attention, n_attn - 1), CAIT_ATTENTION_LENGTH);
    expect("attention buffer", cait_set_attention_buffer(&session, attention, n_attn), CAIT_OK);
    expect("run HWC with attention", cait_run_pixels(&session, image, n_in, CAIT_LAYOUT_HWC, logits, n_out, &top1), CAIT_OK);
    print_logits(logits, n_out, top1);
    printf("attention");
    for (size_t i = 0; i < n_attn; i++) {
        uint32_t bits;
        memcpy(&bits, &attention[i], sizeof bits);
        printf(" %08x", bits);
    }
    printf("\n");
    expect("attention off", cait_set_attention_buffer(&session, NULL, 0), CAIT_OK);
    expect("top 3", cait_top_k(logits, n_out, 3, top3), CAIT_OK);
    printf("top3 %zu %zu %zu\n", top3[0], top3[1], top3[2]);
    expect("top k too many", cait_top_k(logits, n_out, CAIT_TOP_K_MAX + 1, top3), CAIT_BAD_ARGUMENT);

    /* The frame inside the workspace: the camera writes it there, the run reads it in place. */
    size_t need_frame = 0, frame_len = 0;
    uint8_t *frame = NULL;
    expect("check frame", cait_pack_check_frame(pack, pack_len, &need_frame), CAIT_OK);
    expect("frame NULL", cait_frame(&session, NULL, &frame_len), CAIT_NULL_POINTER);
    expect("frame", cait_frame(&session, &frame, &frame_len), CAIT_OK);
    if (frame_len != n_in || need_frame < need || frame < workspace || frame + frame_len > workspace + need) {
        fprintf(stderr, "frame of %zu bytes at offset %td, frame workspace %zu, workspace %zu\n",
                frame_len, frame - workspace, need_frame, need);
        return 1;
    }
    memcpy(frame, image, frame_len);
    expect("run frame short logits", cait_run_frame(&session, logits, n_out - 1, &top1), CAIT_LOGITS_LENGTH);
    expect("run frame", cait_run_frame(&session, logits, n_out, &top1), CAIT_OK);
    print_logits(logits, n_out, top1);

    free(attention);
    free(normalized);
    free(workspace);
    free(image);
    free(pack);
    return failures ? 1 : 0;
}
