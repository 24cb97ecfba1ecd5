/*
 * What a frame holds.
 *
 * MJPG: the JPEG files of DIR/.fakecam/frames (fakecam-run --frames), byte for byte, the one for
 * sequence number s being file s mod count (sorted by name): a camera sees its scene whether or
 * not the host took the frame. Without files, a generated JPEG. YUYV: generated colour bars.
 * The corrupt fault alternates a truncated JPEG (no EOI) and bytes that are no JPEG at all;
 * YUYV frames come short, which uvcvideo flags with V4L2_BUF_FLAG_ERROR.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fakecam.h"

struct jpeg_file {
	uint8_t *data;
	size_t len;
};

static struct jpeg_file *files;
static int nfiles;
static char files_dir[FC_PATH];

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int is_jpeg_name(const char *n)
{
	const char *dot = strrchr(n, '.');
	return dot && (!strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg"));
}

/* (Re)reads the frames directory; tests may change the files between streams. */
static void load_files(const char *dir)
{
	for (int i = 0; i < nfiles; i++)
		free(files[i].data);
	free(files);
	files = NULL;
	nfiles = 0;
	snprintf(files_dir, sizeof(files_dir), "%s", dir);
	DIR *d = opendir(dir);
	if (!d)
		return;
	char *names[1024];
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) && n < 1024)
		if (is_jpeg_name(e->d_name))
			names[n++] = strdup(e->d_name);
	closedir(d);
	qsort(names, n, sizeof(names[0]), by_name);
	files = calloc(n ? n : 1, sizeof(*files));
	for (int i = 0; i < n; i++) {
		char path[FC_PATH * 2];
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		free(names[i]);
		int fd = fc_real.open(path, O_RDONLY | O_CLOEXEC);
		struct stat st;
		if (fd < 0 || fstat(fd, &st) || st.st_size <= 0) {
			if (fd >= 0)
				fc_real.close(fd);
			continue;
		}
		uint8_t *buf = malloc(st.st_size);
		size_t got = 0;
		while (buf && got < (size_t)st.st_size) {
			ssize_t r = fc_real.read(fd, buf + got, st.st_size - got);
			if (r <= 0)
				break;
			got += r;
		}
		fc_real.close(fd);
		if (!buf || got != (size_t)st.st_size) {
			free(buf);
			continue;
		}
		files[nfiles].data = buf;
		files[nfiles].len = got;
		nfiles++;
	}
	fc_log("fakecam: %d JPEG file(s) from %s", nfiles, dir);
}

void fc_frames_reload(struct fc_cam *c)
{
	char path[FC_PATH * 2];
	snprintf(path, sizeof(path), "%s/.fakecam/frames", c->dir);
	load_files(path);
}

/* ---- a small baseline JPEG encoder: every 8x8 block one flat colour (DC only) ---- */

struct bits {
	uint8_t *p, *end;
	uint32_t acc;
	int n;
	int overflow;
};

static void put_byte(struct bits *b, uint8_t v)
{
	if (b->p >= b->end) {
		b->overflow = 1;
		return;
	}
	*b->p++ = v;
}

static void put_bits(struct bits *b, uint32_t code, int len)
{
	for (int i = len - 1; i >= 0; i--) {
		b->acc = (b->acc << 1) | ((code >> i) & 1);
		if (++b->n == 8) {
			put_byte(b, (uint8_t)b->acc);
			if ((uint8_t)b->acc == 0xff)
				put_byte(b, 0); /* byte stuffing */
			b->acc = 0;
			b->n = 0;
		}
	}
}

/* The luminance DC table of the JPEG standard (ITU T.81 table K.3). */
static const uint8_t dc_counts[16] = {0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0};
static const uint8_t dc_symbols[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
static uint16_t dc_code[12];
static uint8_t dc_len[12];

static void make_dc_codes(void)
{
	int code = 0, k = 0;
	for (int len = 1; len <= 16; len++) {
		for (int i = 0; i < dc_counts[len - 1]; i++, k++) {
			dc_code[dc_symbols[k]] = (uint16_t)code++;
			dc_len[dc_symbols[k]] = (uint8_t)len;
		}
		code <<= 1;
	}
}

static void put_dc(struct bits *b, int diff)
{
	int mag = diff < 0 ? -diff : diff, cat = 0;
	while (mag >> cat)
		cat++;
	put_bits(b, dc_code[cat], dc_len[cat]);
	if (cat)
		put_bits(b, (uint32_t)(diff < 0 ? diff - 1 : diff) & ((1u << cat) - 1), cat);
	put_bits(b, 0, 1); /* end of block: the AC table's only code, "0" */
}

/* 3x5 digits, one bit per cell, rows top to bottom. */
static const uint16_t font[10] = {0x7b6f, 0x2c97, 0x73e7, 0x73cf, 0x5bc9,
				  0x79cf, 0x79ef, 0x7249, 0x7bef, 0x7bcf};

/* Luma of block (bx, by): a slow diagonal gradient that moves, with the frame number on it. */
static int block_luma(int bx, int by, int bw, uint64_t seq)
{
	int v = 40 + (int)((bx * 3 + by * 2 + seq * 2) % 160);
	char digits[24];
	int nd = snprintf(digits, sizeof(digits), "%llu", (unsigned long long)seq);
	int cell = bw >= 40 ? 2 : 1; /* blocks per font cell */
	int x0 = 2, y0 = 2;
	int gx = (bx - x0) / cell, gy = (by - y0) / cell;
	if (bx >= x0 && by >= y0 && gy < 5 && gx < nd * 4) {
		int d = gx / 4, col = gx % 4;
		if (col < 3 && (font[digits[d] - '0'] >> (14 - (gy * 3 + col))) & 1)
			return 235;
	}
	return v;
}

size_t fc_encode_jpeg(uint8_t *dst, size_t cap, int width, int height, uint64_t seq)
{
	static int ready;
	if (!ready) {
		make_dc_codes();
		ready = 1;
	}
	struct bits b = {dst, dst + cap, 0, 0, 0};
	static const uint8_t head[] = {0xff, 0xd8, 0xff, 0xe0, 0, 16, 'J', 'F', 'I', 'F', 0,
				       1,    1,    0,    0,    1, 0,  1,   0,   0};
	for (size_t i = 0; i < sizeof(head); i++)
		put_byte(&b, head[i]);
	/* One quantization table: 8 for DC, so that a quantized DC is the mean minus 128. */
	put_byte(&b, 0xff), put_byte(&b, 0xdb), put_byte(&b, 0), put_byte(&b, 67), put_byte(&b, 0);
	for (int i = 0; i < 64; i++)
		put_byte(&b, i ? 16 : 8);
	/* SOF0: 8 bit, three components, Y sampled 2x2 (4:2:0). */
	const uint8_t sof[] = {0xff, 0xc0, 0, 17, 8, (uint8_t)(height >> 8), (uint8_t)height,
			       (uint8_t)(width >> 8), (uint8_t)width, 3, 1, 0x22, 0, 2, 0x11, 0, 3,
			       0x11, 0};
	for (size_t i = 0; i < sizeof(sof); i++)
		put_byte(&b, sof[i]);
	/* DHT: the DC table, and an AC table holding only end-of-block. */
	put_byte(&b, 0xff), put_byte(&b, 0xc4), put_byte(&b, 0), put_byte(&b, 2 + 17 + 12 + 17 + 1);
	put_byte(&b, 0x00);
	for (int i = 0; i < 16; i++)
		put_byte(&b, dc_counts[i]);
	for (int i = 0; i < 12; i++)
		put_byte(&b, dc_symbols[i]);
	put_byte(&b, 0x10);
	for (int i = 0; i < 16; i++)
		put_byte(&b, i == 0 ? 1 : 0);
	put_byte(&b, 0x00);
	const uint8_t sos[] = {0xff, 0xda, 0, 12, 3, 1, 0x00, 2, 0x00, 3, 0x00, 0, 63, 0};
	for (size_t i = 0; i < sizeof(sos); i++)
		put_byte(&b, sos[i]);

	int mw = (width + 15) / 16, mh = (height + 15) / 16;
	int bw = mw * 2;
	int prev[3] = {0, 0, 0};
	for (int my = 0; my < mh && !b.overflow; my++)
		for (int mx = 0; mx < mw; mx++) {
			for (int k = 0; k < 4; k++) {
				int bx = mx * 2 + (k & 1), by = my * 2 + (k >> 1);
				int dc = block_luma(bx, by, bw, seq) - 128;
				put_dc(&b, dc - prev[0]);
				prev[0] = dc;
			}
			/* chroma: a colour band that drifts with the frame number */
			int band = (int)((mx + seq) % 32);
			int cb = band < 16 ? 40 : -20, cr = band < 16 ? -30 : 45;
			put_dc(&b, cb - prev[1]);
			prev[1] = cb;
			put_dc(&b, cr - prev[2]);
			prev[2] = cr;
		}
	if (b.n)
		put_bits(&b, 0x7f, 8 - b.n); /* pad with ones */
	put_byte(&b, 0xff);
	put_byte(&b, 0xd9);
	return b.overflow ? 0 : (size_t)(b.p - dst);
}

/* YUYV colour bars that scroll, one bar per eighth of the width. */
static void fill_yuyv(uint8_t *dst, int width, int height, uint64_t seq)
{
	static const uint8_t bars[8][3] = {{235, 128, 128}, {210, 16, 146},  {170, 166, 16},
					   {145, 54, 34},   {106, 202, 222}, {81, 90, 240},
					   {41, 240, 110},  {16, 128, 128}};
	for (int y = 0; y < height; y++) {
		uint8_t *row = dst + (size_t)y * width * 2;
		for (int x = 0; x < width; x += 2) {
			int bar = (int)(((x + seq * 4) * 8 / (width ? width : 1)) % 8);
			row[x * 2] = bars[bar][0];
			row[x * 2 + 1] = bars[bar][1];
			row[x * 2 + 2] = bars[bar][0];
			row[x * 2 + 3] = bars[bar][2];
		}
	}
}

size_t fc_fill_frame(struct fc_cam *c, const struct fc_buffer_fill *f, int *error)
{
	(void)c;
	*error = 0;
	int corrupt = f->fault == FC_FAULT_CORRUPT;
	if (f->fourcc == V4L2_PIX_FMT_YUYV) {
		size_t len = (size_t)f->width * f->height * 2;
		if (len > f->cap)
			len = f->cap;
		fill_yuyv(f->dst, f->width, f->height, f->sequence);
		if (corrupt) {
			*error = 1;
			return len / 3;
		}
		return len;
	}
	size_t len;
	if (nfiles) {
		const struct jpeg_file *jf = &files[f->sequence % nfiles];
		len = jf->len < f->cap ? jf->len : f->cap;
		memcpy(f->dst, jf->data, len);
		if (len < jf->len)
			*error = 1;
	} else {
		len = fc_encode_jpeg(f->dst, f->cap, f->width, f->height, f->sequence);
	}
	if (corrupt && len > 4) {
		if (f->sequence % 2) {
			/* garbage: what a desynchronised stream looks like */
			uint32_t x = (uint32_t)f->sequence * 2654435761u + 1;
			for (size_t i = 0; i < len; i++) {
				x ^= x << 13, x ^= x >> 17, x ^= x << 5;
				f->dst[i] = (uint8_t)x;
			}
			f->dst[0] = 0x00;
		} else {
			len = len * 2 / 5; /* truncated: the end of the frame was lost */
		}
	}
	return len;
}
