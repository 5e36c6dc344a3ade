/* real.h: the scalar type of the numeric core.
 * The core (tensor, gemm, layers, models, optim) is compiled twice from the same sources:
 * as float for the program, and as double (-DSSL_F64) for the finite-difference gradient
 * checks, so the tests check the very code that trains. Nothing outside the core depends
 * on SSL_F64. */
#ifndef SSL_REAL_H
#define SSL_REAL_H

#ifdef SSL_F64
typedef double ssl_real;
#define SSL_REAL_NAME "f64"
#else
typedef float ssl_real;
#define SSL_REAL_NAME "f32"
#endif

#endif
