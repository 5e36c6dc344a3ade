/* png_grid.h: writing a grid of small images as one PNG (libpng), for looking at augmentation
 * recipes. Not collective: one process writes. */
#ifndef SSL_PNG_GRID_H
#define SSL_PNG_GRID_H

#include <stdint.h>

#include "check.h"

struct ssl_png_grid {
    int64_t rows, cols, cell;  /* cells of cell x cell pixels */
    int64_t zoom, gap;         /* each image pixel becomes zoom x zoom; gap pixels between cells */
    uint8_t *rgb;              /* (height, width, 3) */
    int64_t width, height;
};

enum ssl_status ssl_png_grid_init(struct ssl_png_grid *g, int64_t rows, int64_t cols, int64_t cell,
                                  int64_t zoom, struct ssl_error *err);
/* Places a (c, h, w) image with values in [0, 1] (clamped; 1 channel shown as gray), h, w <=
 * cell, centred in cell (row, col). */
void ssl_png_grid_put(struct ssl_png_grid *g, int64_t row, int64_t col, const float *img, int64_t c,
                      int64_t h, int64_t w);
/* Writes the PNG atomically (path.tmp, then rename). */
enum ssl_status ssl_png_grid_write(const struct ssl_png_grid *g, const char *path, struct ssl_error *err);
void ssl_png_grid_free(struct ssl_png_grid *g);

#endif
