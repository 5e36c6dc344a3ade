/* png_grid.c: an RGB canvas on a white background, written with libpng. */
#include "png_grid.h"

#include <errno.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum ssl_status ssl_png_grid_init(struct ssl_png_grid *g, int64_t rows, int64_t cols, int64_t cell,
                                  int64_t zoom, struct ssl_error *err)
{
    memset(g, 0, sizeof *g);
    g->rows = rows;
    g->cols = cols;
    g->cell = cell;
    g->zoom = zoom;
    g->gap = 2 * zoom;
    g->width = cols * (cell * zoom + g->gap) + g->gap;
    g->height = rows * (cell * zoom + g->gap) + g->gap;
    g->rgb = malloc((size_t)(g->width * g->height * 3));
    if (g->rgb == NULL) return ssl_error_set(err, SSL_E_OTHER, "out of memory for a %lldx%lld image",
                                             (long long)g->width, (long long)g->height);
    memset(g->rgb, 255, (size_t)(g->width * g->height * 3));
    return SSL_OK;
}

static uint8_t to_byte(float v)
{
    float c = v < 0 ? 0 : v > 1 ? 1 : v;
    return (uint8_t)(c * 255.0f + 0.5f);
}

void ssl_png_grid_put(struct ssl_png_grid *g, int64_t row, int64_t col, const float *img, int64_t c,
                      int64_t h, int64_t w)
{
    int64_t z = g->zoom, x0 = g->gap + col * (g->cell * z + g->gap) + (g->cell - w) * z / 2;
    int64_t y0 = g->gap + row * (g->cell * z + g->gap) + (g->cell - h) * z / 2;
    for (int64_t y = 0; y < h * z; y++)
        for (int64_t x = 0; x < w * z; x++) {
            uint8_t *px = g->rgb + ((y0 + y) * g->width + x0 + x) * 3;
            for (int k = 0; k < 3; k++) px[k] = to_byte(img[(c == 3 ? k : 0) * h * w + (y / z) * w + x / z]);
        }
}

static enum ssl_status write_png(const struct ssl_png_grid *g, FILE *f, const char *path,
                                 struct ssl_error *err)
{
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (info == NULL) {
        png_destroy_write_struct(&png, NULL);
        return ssl_error_set(err, SSL_E_OTHER, "%s: libpng could not start", path);
    }
    /* libpng reports errors by longjmp: this frame is where they land */
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        return ssl_error_set(err, SSL_E_OTHER, "%s: libpng failed to write", path);
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)g->width, (png_uint_32)g->height, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int64_t y = 0; y < g->height; y++) png_write_row(png, g->rgb + y * g->width * 3);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return SSL_OK;
}

enum ssl_status ssl_png_grid_write(const struct ssl_png_grid *g, const char *path, struct ssl_error *err)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (f == NULL) return ssl_error_set(err, SSL_E_USAGE, "%s: cannot write: %s", tmp, strerror(errno));
    enum ssl_status rc = write_png(g, f, path, err);
    if (fclose(f) != 0 && !rc) rc = ssl_error_set(err, SSL_E_OTHER, "%s: %s", tmp, strerror(errno));
    if (!rc && rename(tmp, path) != 0) rc = ssl_error_set(err, SSL_E_OTHER, "%s: %s", path, strerror(errno));
    if (rc) remove(tmp);
    return rc;
}

void ssl_png_grid_free(struct ssl_png_grid *g)
{
    free(g->rgb);
    g->rgb = NULL;
}
