/* signals.h: SIGUSR1 and SIGTERM (what SLURM sends before preemption or the time limit) and
 * SIGINT (a terminal) ask the trainer to checkpoint and stop at the next step boundary.
 *
 * The handler only records the signal: a process-wide flag is the one piece of global state in
 * ssltrain, because a signal handler has no other way to talk to the program. The trainer
 * polls it after every step and agrees across ranks (one MPI_Allreduce), since the signal may
 * reach the ranks at different steps. */
#ifndef SSL_SIGNALS_H
#define SSL_SIGNALS_H

void ssl_signals_install(void);
/* The last stop signal received (0: none). */
int ssl_signals_pending(void);
const char *ssl_signal_name(int sig);

#endif
