/* The Cortex-M vector table and reset handler: turn on the FPU (the library is hard-float), copy
 * .data's initial image from flash to RAM, then newlib's `_start` (libgloss rdimon-crt0: zeroes .bss, sets up semihosting, passes the command
 * line to main and calls exit with its status). A fault stops in a loop, which the QEMU run's
 * timeout reports. */
#include <stdint.h>

extern uint32_t __stack[], __data_start__[], __data_end__[], __data_load__[];
extern void _start(void);

static void reset(void) {
    /* CPACR: full access to coprocessors 10 and 11, the FPU; the barriers make it take effect. */
    *(volatile uint32_t *)0xE000ED88 |= 0xFu << 20;
    __asm volatile("dsb\n\tisb" ::: "memory");
    for (uint32_t *src = __data_load__, *dst = __data_start__; dst < __data_end__;) *dst++ = *src++;
    _start();
}

static void halt(void) {
    for (;;) {
    }
}

__attribute__((section(".vectors"), used)) void (*const vectors[16])(void) = {
    (void (*)(void))__stack, reset, halt, halt, halt, halt, halt,
};
