/*
 * qp's side of the libjpeg-turbo binding: the libjpeg API driven from C, so that libjpeg's
 * error_exit can longjmp back here (never through Rust frames) and every warning is seen.
 *
 * TurboJPEG's own API would do the setjmp too, but it keeps only the first warning's text and
 * turns any warning into a failed call: qp needs to tell "data ended after the image was
 * complete" (accepted) from "data ended inside the scan" (truncated), and "extraneous bytes"
 * (accepted) from "bad Huffman code" (corrupt). So this file records every warning code, whether
 * the data ran out, and whether every component and coefficient was delivered, and maps
 * libjpeg's message codes onto qp's own causes (enum qp_cause, mirrored in mod.rs). The text
 * users see is written in Rust; libjpeg's own wording is kept only for tests and debug logs.
 */
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* jpeglib.h first: jerror.h declares the arithmetic-coding messages only once jconfig.h (through
 * jpeglib.h) has said arithmetic coding is built in. */
#include "jpeglib.h"
#include "jerror.h"

enum qp_cause {
  QP_OK = 0,
  QP_TRUNCATED = 1,          /* the data ends before the image is complete */
  QP_CORRUPT_DATA = 2,       /* entropy-coded data damaged (bad code, marker inside) */
  QP_CORRUPT_RESTART = 3,    /* restart markers out of sequence */
  QP_CORRUPT_PROGRESSION = 4,/* progressive scans inconsistent with each other */
  QP_BAD_HUFFMAN = 5,        /* a Huffman table is missing or invalid */
  QP_BAD_QUANT = 6,          /* a quantization table is missing or invalid */
  QP_BAD_FRAME = 7,          /* frame header: size, components, sampling */
  QP_BAD_SCAN = 8,           /* scan header */
  QP_BAD_STRUCTURE = 9,      /* markers out of order, missing, duplicated, bad lengths */
  QP_NO_IMAGE = 10,          /* no frame at all */
  QP_UNSUP_PRECISION = 11,   /* param: bits per sample */
  QP_UNSUP_PROCESS = 12,     /* param: SOF marker (hierarchical, ...) */
  QP_UNSUP_COMPONENTS = 13,  /* param: number of components */
  QP_TOO_MANY_SCANS = 14,    /* param: the limit */
  QP_NO_MEMORY = 15,
  QP_INTERNAL = 16,
  QP_ARITH_TABLE = 17,       /* an arithmetic-coding table is missing or invalid */
  QP_BAD_COEFFICIENT = 18,   /* a coefficient out of range */
  QP_TOO_LARGE = 19,         /* over libjpeg's own dimension limit */
  QP_UNSUP_COLOR = 20,       /* a colour space libjpeg cannot convert here */
};

/* What the caller asks for and what it gets back; mirrored by `Info` in mod.rs. */
typedef struct qp_info {
  /* in */
  int scale_num;   /* output scale scale_num/8, 1..8 */
  int max_scans;   /* refuse past this many scans */
  /* header */
  int width, height, components, color_space, precision, progressive, arith, lossless;
  int adobe;       /* an Adobe APP14 marker was seen (CMYK is then stored inverted) */
  /* output */
  int out_width, out_height, out_components, out_kind;
  /* verdict */
  int cause;       /* enum qp_cause */
  int param;
  int eof;         /* the data ran out and libjpeg was fed a fake EOI */
  int incomplete;  /* a component or coefficient never arrived */
  int lines;       /* scanlines delivered */
  int scans;
  /* warnings seen (libjpeg substituted zeros and went on) */
  int bad_data;    /* bad Huffman or arithmetic code */
  int hit_marker;  /* the scan data ended (at a marker) before the scan was complete */
  int hit_at_eof;  /* ... at the fake EOI after the data ran out */
  int resync;      /* a restart marker out of sequence */
  int bogus_progression;
  int extraneous;  /* bytes between the scan data and the next marker */
  int other_warnings;
  char message[JMSG_LENGTH_MAX];
} qp_info;

/* The pixel layout qp_dec_start chose (info->out_kind). */
enum qp_out { QP_OUT_GRAY = 1, QP_OUT_RGBX = 2, QP_OUT_RGB = 3, QP_OUT_YCC = 4, QP_OUT_CMYK = 5 };

_Static_assert(JMSG_LENGTH_MAX == 200, "mod.rs sizes the message buffer at 200 bytes");

typedef struct qp_dec {
  struct jpeg_decompress_struct d;
  struct jpeg_error_mgr err;
  struct jpeg_source_mgr src;
  struct jpeg_progress_mgr progress;
  jmp_buf jump;
  qp_info *info;
  unsigned seen; /* components (by index) that appeared in a scan */
  int stage;     /* 0 fresh, 1 header read, 2 started */
} qp_dec;

static const JOCTET fake_eoi[2] = { 0xFF, JPEG_EOI };

static void src_init(j_decompress_ptr d) { (void)d; }

/* The whole file is one buffer: running out means the file ends here. Feed an EOI, as
 * libjpeg's own memory source does, and note it: whether that matters is decided at the end. */
static boolean src_fill(j_decompress_ptr d)
{
  qp_dec *q = (qp_dec *)d;
  q->info->eof = 1;
  WARNMS(d, JWRN_JPEG_EOF);
  d->src->next_input_byte = fake_eoi;
  d->src->bytes_in_buffer = 2;
  return TRUE;
}

static void src_skip(j_decompress_ptr d, long n)
{
  struct jpeg_source_mgr *s = d->src;
  if (n <= 0) return;
  while ((size_t)n > s->bytes_in_buffer) {
    n -= (long)s->bytes_in_buffer;
    (void)(*s->fill_input_buffer)(d);
  }
  s->next_input_byte += n;
  s->bytes_in_buffer -= (size_t)n;
}

static void src_term(j_decompress_ptr d) { (void)d; }

static enum qp_cause cause_of(int code)
{
  switch (code) {
  case JERR_BAD_PRECISION: return QP_UNSUP_PRECISION;
  case JERR_SOF_UNSUPPORTED:
  case JERR_ARITH_NOTIMPL:
  case JERR_NOT_COMPILED: return QP_UNSUP_PROCESS;
  case JERR_CONVERSION_NOTIMPL: return QP_UNSUP_COLOR;
  case JERR_COMPONENT_COUNT: return QP_UNSUP_COMPONENTS;
  case JERR_OUT_OF_MEMORY:
  case JERR_NO_BACKING_STORE:
  case JERR_TFILE_CREATE: return QP_NO_MEMORY;
  case JERR_IMAGE_TOO_BIG:
  case JERR_WIDTH_OVERFLOW: return QP_TOO_LARGE;
  case JERR_BAD_HUFF_TABLE:
  case JERR_DHT_INDEX:
  case JERR_NO_HUFF_TABLE:
  case JERR_HUFF_CLEN_OVERFLOW:
  case JERR_HUFF_MISSING_CODE: return QP_BAD_HUFFMAN;
  case JERR_DQT_INDEX:
  case JERR_NO_QUANT_TABLE: return QP_BAD_QUANT;
  case JERR_DAC_INDEX:
  case JERR_DAC_VALUE:
  case JERR_NO_ARITH_TABLE: return QP_ARITH_TABLE;
  case JERR_BAD_DCT_COEF: return QP_BAD_COEFFICIENT;
  case JERR_EMPTY_IMAGE:
  case JERR_BAD_SAMPLING:
  case JERR_BAD_MCU_SIZE:
  case JERR_BAD_J_COLORSPACE:
  case JERR_FRACT_SAMPLE_NOTIMPL:
  case JERR_CCIR601_NOTIMPL:
  case JERR_BAD_RESTART: return QP_BAD_FRAME;
  case JERR_BAD_COMPONENT_ID:
  case JERR_BAD_PROGRESSION:
  case JERR_BAD_PROG_SCRIPT:
  case JERR_BAD_SCAN_SCRIPT:
  case JERR_EOI_EXPECTED: return QP_BAD_SCAN;
  case JERR_NO_IMAGE:
  case JERR_INPUT_EMPTY: return QP_NO_IMAGE;
  case JERR_BAD_LENGTH:
  case JERR_NO_SOI:
  case JERR_SOI_DUPLICATE:
  case JERR_SOF_DUPLICATE:
  case JERR_SOF_NO_SOS:
  case JERR_SOS_NO_SOF:
  case JERR_UNKNOWN_MARKER:
  case JERR_INPUT_EOF: return QP_BAD_STRUCTURE;
  default: return QP_INTERNAL;
  }
}

static void on_error(j_common_ptr c)
{
  qp_dec *q = (qp_dec *)c;
  qp_info *i = q->info;
  (*c->err->format_message)(c, i->message);
  i->cause = cause_of(c->err->msg_code);
  i->param = c->err->msg_parm.i[0];
  longjmp(q->jump, 1);
}

/* Warnings go on: libjpeg substitutes zeros and carries on, and the caller decides. */
static void on_message(j_common_ptr c, int level)
{
  qp_dec *q = (qp_dec *)c;
  int code = c->err->msg_code;
  if (level >= 0) return; /* trace messages */
  switch (code) {
  case JWRN_HUFF_BAD_CODE:
  case JWRN_ARITH_BAD_CODE: q->info->bad_data = 1; break;
  case JWRN_HIT_MARKER:
    q->info->hit_marker = 1;
    if (q->info->eof) q->info->hit_at_eof = 1;
    break;
  case JWRN_MUST_RESYNC: q->info->resync = 1; break;
  case JWRN_BOGUS_PROGRESSION: q->info->bogus_progression = 1; break;
  case JWRN_EXTRANEOUS_DATA: q->info->extraneous = 1; break;
  case JWRN_JPEG_EOF: break;
  default: q->info->other_warnings = 1;
  }
  if (q->info->message[0] == 0 && code != JWRN_JPEG_EOF)
    (*c->err->format_message)(c, q->info->message);
}

static void on_output(j_common_ptr c) { (void)c; }

/* Called as input is consumed: note which components the current scan carries, and stop a
 * file whose scans go on and on (each one is a pass over the whole image). */
static void on_progress(j_common_ptr c)
{
  qp_dec *q = (qp_dec *)c;
  j_decompress_ptr d = &q->d;
  int n;
  if (d->global_state < 0 || d->comps_in_scan <= 0) return;
  for (n = 0; n < d->comps_in_scan && n < MAX_COMPS_IN_SCAN; n++)
    if (d->cur_comp_info[n] && d->cur_comp_info[n]->component_index < 32)
      q->seen |= 1u << d->cur_comp_info[n]->component_index;
  q->info->scans = d->input_scan_number;
  if (q->info->max_scans > 0 && d->input_scan_number > q->info->max_scans) {
    q->info->cause = QP_TOO_MANY_SCANS;
    q->info->param = q->info->max_scans;
    longjmp(q->jump, 1);
  }
}

qp_dec *qp_dec_new(void)
{
  /* volatile: read again after a longjmp from jpeg_create_decompress (out of memory) */
  qp_dec *volatile q = calloc(1, sizeof(qp_dec));
  qp_info scratch;
  if (!q) return NULL;
  memset(&scratch, 0, sizeof scratch);
  q->info = &scratch;
  q->d.err = jpeg_std_error(&q->err);
  q->err.error_exit = on_error;
  q->err.emit_message = on_message;
  q->err.output_message = on_output;
  if (setjmp(q->jump)) {
    free(q);
    return NULL;
  }
  jpeg_create_decompress(&q->d);
  q->info = NULL;
  q->src.init_source = src_init;
  q->src.fill_input_buffer = src_fill;
  q->src.skip_input_data = src_skip;
  q->src.resync_to_restart = jpeg_resync_to_restart;
  q->src.term_source = src_term;
  q->d.src = &q->src;
  q->progress.progress_monitor = on_progress;
  q->d.progress = &q->progress;
  return q;
}

void qp_dec_free(qp_dec *q)
{
  if (!q) return;
  jpeg_destroy_decompress(&q->d);
  free(q);
}

/* Reads the markers up to the first scan. Returns 0, or -1 with info->cause set. */
int qp_dec_header(qp_dec *q, const uint8_t *data, size_t len, qp_info *info)
{
  j_decompress_ptr d = &q->d;
  int max_scans = info->max_scans, scale = info->scale_num;
  memset(info, 0, sizeof *info);
  info->max_scans = max_scans;
  info->scale_num = scale;
  q->info = info;
  q->seen = 0;
  if (setjmp(q->jump)) {
    jpeg_abort_decompress(d);
    q->stage = 0;
    return -1;
  }
  jpeg_abort_decompress(d);
  q->src.next_input_byte = data;
  q->src.bytes_in_buffer = len;
  q->stage = 0;
  jpeg_read_header(d, TRUE);
  q->stage = 1;
  info->width = (int)d->image_width;
  info->height = (int)d->image_height;
  info->components = d->num_components;
  info->color_space = d->jpeg_color_space;
  info->precision = d->data_precision;
  info->progressive = d->progressive_mode;
  info->arith = d->arith_code;
  info->adobe = d->saw_Adobe_marker;
  return 0;
}

/* Starts decompression at scale_num/8. Output: gray stays gray; colour becomes RGBX, CMYK
 * stays CMYK (made RGB by the caller, as Pillow does). Lossless files (`lossless`, from the SOF
 * marker, read by the caller) allow neither scaling nor colour conversion in libjpeg: they come
 * out in their own colour space. For a file with several scans this reads them all. */
int qp_dec_start(qp_dec *q, int lossless, qp_info *info)
{
  j_decompress_ptr d = &q->d;
  J_COLOR_SPACE out;
  int kind;
  q->info = info;
  info->lossless = lossless;
  if (q->stage != 1) {
    info->cause = QP_INTERNAL;
    return -1;
  }
  if (setjmp(q->jump)) {
    jpeg_abort_decompress(d);
    q->stage = 0;
    return -1;
  }
  if (d->data_precision != 8 && !(lossless && d->data_precision >= 2 && d->data_precision < 8)) {
    info->cause = QP_UNSUP_PRECISION;
    info->param = d->data_precision;
    jpeg_abort_decompress(d);
    q->stage = 0;
    return -1;
  }
  switch (d->jpeg_color_space) {
  case JCS_GRAYSCALE: out = JCS_GRAYSCALE; kind = QP_OUT_GRAY; break;
  case JCS_RGB:
  case JCS_YCbCr:
    if (!lossless) { out = JCS_EXT_RGBX; kind = QP_OUT_RGBX; }
    else if (d->jpeg_color_space == JCS_RGB) { out = JCS_RGB; kind = QP_OUT_RGB; }
    else { out = JCS_YCbCr; kind = QP_OUT_YCC; }
    break;
  case JCS_CMYK:
  case JCS_YCCK: out = JCS_CMYK; kind = QP_OUT_CMYK; break;
  default:
    info->cause = QP_UNSUP_COMPONENTS;
    info->param = d->num_components;
    jpeg_abort_decompress(d);
    q->stage = 0;
    return -1;
  }
  d->out_color_space = out;
  info->out_kind = kind;
  d->scale_num = lossless ? 8 : (unsigned)info->scale_num;
  d->scale_denom = 8;
  /* Pillow's settings for the default decode: accurate integer IDCT, fancy upsampling. */
  d->dct_method = JDCT_ISLOW;
  d->do_fancy_upsampling = TRUE;
  jpeg_start_decompress(d);
  q->stage = 2;
  info->out_width = (int)d->output_width;
  info->out_height = (int)d->output_height;
  info->out_components = d->output_components;
  return 0;
}

/* Whether every component of the frame, and in a progressive file every coefficient down to
 * its last bit, arrived: a file cut between two scans leaves something out. */
static int delivered_all(qp_dec *q)
{
  j_decompress_ptr d = &q->d;
  int c, k;
  for (c = 0; c < d->num_components && c < 32; c++)
    if (!(q->seen & (1u << c))) return 0;
  if (d->progressive_mode && d->coef_bits) {
    for (c = 0; c < d->num_components; c++)
      for (k = 0; k < DCTSIZE2; k++)
        if (d->coef_bits[c][k] != 0) return 0;
  }
  return 1;
}

/* Reads every scanline into `out` (rows `stride` bytes apart) and finishes. */
int qp_dec_pixels(qp_dec *q, uint8_t *out, size_t stride, qp_info *info)
{
  j_decompress_ptr d = &q->d;
  JSAMPROW rows[16];
  q->info = info;
  if (q->stage != 2) {
    info->cause = QP_INTERNAL;
    return -1;
  }
  if (setjmp(q->jump)) {
    jpeg_abort_decompress(d);
    q->stage = 0;
    return -1;
  }
  while (d->output_scanline < d->output_height) {
    int n = 0, y = (int)d->output_scanline;
    while (n < 16 && y + n < (int)d->output_height) {
      rows[n] = out + (size_t)(y + n) * stride;
      n++;
    }
    jpeg_read_scanlines(d, rows, (JDIMENSION)n);
  }
  info->lines = (int)d->output_scanline;
  /* Before finishing: jpeg_finish_decompress frees the image pool, coef_bits with it (found by
   * the fuzz target under AddressSanitizer). Every scan of a multi-scan file has been read by
   * now (jpeg_start_decompress reads them all). */
  info->incomplete = !delivered_all(q);
  if (d->progressive_mode && !d->coef_bits) info->incomplete = 1;
  /* Reads on to the EOI: a scan after the output (rare) still gets read and checked. */
  jpeg_finish_decompress(d);
  q->stage = 0;
  return 0;
}

typedef struct qp_enc {
  struct jpeg_compress_struct c;
  struct jpeg_error_mgr err;
  jmp_buf jump;
  char *message;
} qp_enc;

static void on_enc_error(j_common_ptr c)
{
  qp_enc *e = (qp_enc *)c;
  (*c->err->format_message)(c, e->message);
  longjmp(e->jump, 1);
}

/* Baseline JPEG of an RGBX buffer with libjpeg's standard tables, at `quality`; chroma 4:4:4
 * when `full_chroma`, else 4:2:0. The result is malloc'd: qp_free releases it. Returns 0, or -1
 * with libjpeg's message in `message` (JMSG_LENGTH_MAX bytes). */
int qp_encode(const uint8_t *rgbx, int width, int height, int quality, int full_chroma,
              unsigned char **out, unsigned long *out_len, char *message)
{
  qp_enc e;
  JSAMPROW rows[16];
  int sampling = full_chroma ? 1 : 2;
  memset(&e, 0, sizeof e);
  *out = NULL;
  *out_len = 0;
  e.message = message;
  e.c.err = jpeg_std_error(&e.err);
  e.err.error_exit = on_enc_error;
  e.err.output_message = on_output;
  if (setjmp(e.jump)) {
    jpeg_destroy_compress(&e.c);
    free(*out);
    *out = NULL;
    *out_len = 0;
    return -1;
  }
  jpeg_create_compress(&e.c);
  jpeg_mem_dest(&e.c, out, out_len);
  e.c.image_width = (JDIMENSION)width;
  e.c.image_height = (JDIMENSION)height;
  e.c.input_components = 4;
  e.c.in_color_space = JCS_EXT_RGBX;
  jpeg_set_defaults(&e.c);
  jpeg_set_quality(&e.c, quality, TRUE);
  e.c.comp_info[0].h_samp_factor = sampling;
  e.c.comp_info[0].v_samp_factor = sampling;
  e.c.dct_method = JDCT_ISLOW;
  jpeg_start_compress(&e.c, TRUE);
  while (e.c.next_scanline < e.c.image_height) {
    int n = 0, y = (int)e.c.next_scanline;
    while (n < 16 && y + n < height) {
      rows[n] = (JSAMPROW)(rgbx + (size_t)(y + n) * (size_t)width * 4);
      n++;
    }
    jpeg_write_scanlines(&e.c, rows, (JDIMENSION)n);
  }
  jpeg_finish_compress(&e.c);
  jpeg_destroy_compress(&e.c);
  return 0;
}

void qp_free(void *p) { free(p); }
