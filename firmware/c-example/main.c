/* cait-edge from C on an emulated Cortex-M4 (QEMU mps2-an386): the pack is linked into flash from
 * model.h (`cait export PACK --c-array -o model.h --name model`), the session and its workspace are
 * static, and each image is classified from the normalized .npy batch named on the command line
 * (read through semihosting: a stand-in for a camera). Prints the logits' bits and the top class of
 * every image, then exits with the first failing status (0 when all ran). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cait.h"
#include "model.h"

static uint8_t workspace[MODEL_WORKSPACE_BYTES] __attribute__((aligned(16)));
static cait_session session;
static float image[MODEL_INPUT_LEN];
static float logits[MODEL_LOGITS_LEN];

static int fail(const char *what, int32_t status) {
    printf("error: %s: %s\n", what, cait_status_name(status));
    return status;
}

int main(int argc, char **argv) {
    int32_t st = cait_session_init(&session, model, MODEL_LEN, workspace, sizeof workspace);
    if (st != CAIT_OK) return fail("cait_session_init", st);

    /* A version-1 .npy of little-endian float32 [N, C, H, W]: magic, version, header length, header. */
    FILE *f = argc > 1 ? fopen(argv[1], "rb") : NULL;
    uint8_t head[10];
    if (!f || fread(head, 1, 10, f) != 10 || memcmp(head, "\x93NUMPY\x01", 7) != 0)
        return fail("expected a version-1 .npy file as the argument", CAIT_BAD_ARGUMENT);
    fseek(f, 10 + (head[8] | head[9] << 8), SEEK_SET);

    for (int n = 0; fread(image, sizeof image, 1, f) == 1; n++) {
        size_t top1;
        st = cait_run_normalized(&session, image, MODEL_INPUT_LEN, logits, MODEL_LOGITS_LEN, &top1);
        if (st != CAIT_OK) return fail("cait_run_normalized", st);
        printf("image %d: top1 %u logits", n, (unsigned)top1);
        for (size_t i = 0; i < MODEL_LOGITS_LEN; i++) {
            uint32_t bits;
            memcpy(&bits, &logits[i], sizeof bits);
            printf(" %08lx", (unsigned long)bits);
        }
        printf("\n");
    }
    fclose(f);
    printf("done\n");
    return 0;
}
