/* loss_tool.h: what `ssltrain loss` and the `ssltrain-loss` executable share: the help text.
 * `ssltrain loss ...` execs `ssltrain-loss` (installed next to ssltrain) before MPI starts; the
 * tool initialises MPI itself (`mpiexec -n P ssltrain loss ...`, or alone as a singleton) and
 * computes every loss in fp64 (the ssl_core_f64 build of the losses). */
#ifndef SSL_LOSS_TOOL_H
#define SSL_LOSS_TOOL_H

/* The name of the executable, looked up in the directory of the running ssltrain. */
#define SSL_LOSS_TOOL_EXE "ssltrain-loss"

#define SSL_LOSS_TOOL_HELP                                                                       \
    "usage: [mpiexec -n P] ssltrain loss IN.h5 --out OUT.h5 [--losses simclr,vicreg,...]\n"      \
    "                      [key=value ...]\n"                                                    \
    "\n"                                                                                         \
    "Computes SSL losses and their gradients in fp64 on an HDF5 dump: /z1, /z2 (N, D) and, when\n" \
    "present, /p1, /p2, /t1, /t2 (N, D), /queue (K, D), /prototypes (K, D), float32 or float64.\n" \
    "Losses: simclr, moco, byol, simsiam, swav, barlow, vicreg, zero_fcl, zero_icl, wmse, sdbn,\n" \
    "cwrgp, rdm, w2, uniformity, alignment. Default: every loss whose inputs are present (the\n"  \
    "others are skipped with a note); naming a loss whose inputs are absent is an error.\n"      \
    "Under mpiexec, rank r reads and writes rows [r N/P, (r+1) N/P) of the N-row inputs (N must\n" \
    "be divisible by P); /queue and /prototypes are read by every rank. The values are those of\n" \
    "one process at every P; with loss.per_rank=true, wmse, sdbn, cwrgp, zero_fcl and zero_icl\n" \
    "report the mean of the ranks' values and its gradient (each rank's / P, as DDP averages).\n" \
    "OUT.h5 (written atomically): /<loss>/value (fp64 scalar) and /<loss>/grad_<input> (fp64,\n" \
    "the input's shape) per differentiated input; root attributes source, format\n"             \
    "(\"ssltrain-loss\"), format_version (1), ranks (P). A JSON summary goes to stdout.\n"       \
    "Options: loss.* and linalg.* keys (ssltrain help config). docs/LOSSES.md, section\n"       \
    "\"ssltrain loss\", has the details.\n"                                                      \
    "Exit codes: 0 ok, 2 usage, 3 bad input file, 4 non-finite loss, 1 other.\n"

#endif
