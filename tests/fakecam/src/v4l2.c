/*
 * The V4L2 ioctls of an emulated camera, answered as uvcvideo (Linux 6.1 to 6.12, the kernels
 * of Debian 12 and Raspberry Pi OS) and v4l2-core answer them: the same checks in the same
 * order, the same errno values. Comments name the kernel behaviour each rule copies.
 *
 * One open file is a struct fc_handle. Like uvcvideo, the camera has one buffer queue; the
 * first handle to call S_FMT, S_PARM, S_INPUT, REQBUFS or CREATE_BUFS owns it ("privileges",
 * kept in the shared state so that it holds across processes) and every other handle gets
 * EBUSY from those and from the queue ioctls until the owner closes or frees its buffers.
 *
 * Frames are made when asked for: frame k of a stream completes at t0 + (k + 1) * interval
 * and goes into the oldest queued buffer if one was queued by then, else it is lost (its
 * sequence number is skipped, as uvcvideo counts every frame the camera sends).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "fakecam.h"

enum { B_DEQUEUED, B_QUEUED, B_DONE };

struct fc_buf {
	int memfd;
	uint8_t *map;       /* the library's own view of an MMAP buffer */
	uint32_t size;      /* plane size (sizeimage when allocated) */
	uint32_t offset;    /* the mmap() offset QUERYBUF gives */
	unsigned long userptr;
	uint32_t ulength;
	int state;
	uint64_t queued_ns;
	uint32_t bytesused, sequence;
	int error;
	struct timeval ts;
	void *maps[4];      /* the application's mappings, for V4L2_BUF_FLAG_MAPPED */
};

/* The camera's queue, as this process sees it. */
struct fc_queue {
	int memory; /* 0 while no buffers */
	int nbufs;
	struct fc_buf bufs[FC_MAX_BUFFERS];
	int order[FC_MAX_BUFFERS], nqueued;
	int done[FC_MAX_BUFFERS], ndone;
	int streaming;
	uint64_t t0, next_k, lost_to_stall;
	uint64_t ival_ns;
	uint32_t fourcc, sizeimage;
	int width, height;
	struct fc_handle *holder; /* the handle whose buffers these are */
};

struct fc_sub {
	uint32_t id, flags;
	int pending;
	uint64_t order;
	struct v4l2_event ev;
};

struct fc_handle {
	struct fc_cam *cam;
	int fd;
	uint64_t id;
	uint32_t generation;
	int prio;
	struct fc_sub subs[FC_MAX_CTRLS + 4];
	int nsubs;
	uint32_t ev_sequence;
	uint64_t ev_order;
	struct fc_handle *link;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct fc_handle *all_handles;
static struct fc_queue queues[FC_MAX_CAMS];
static int prio_count[FC_MAX_CAMS][4];

#define ERR(e)              \
	do {                \
		errno = (e); \
		return -1;   \
	} while (0)

static struct fc_queue *queue_of(struct fc_handle *h)
{
	return &queues[h->cam->index];
}

static int dead(struct fc_handle *h)
{
	struct fc_shared *sh = h->cam->sh;
	return !__atomic_load_n(&sh->plugged, __ATOMIC_ACQUIRE) ||
	       __atomic_load_n(&sh->generation, __ATOMIC_ACQUIRE) != h->generation;
}

static const struct fc_format *cur_format(struct fc_cam *c)
{
	return &c->profile->formats[c->sh->fmt_index];
}

static const struct fc_frame *cur_frame(struct fc_cam *c)
{
	return &cur_format(c)->frames[c->sh->frame_index];
}

static uint32_t bytesperline(const struct fc_format *f, const struct fc_frame *fr)
{
	return f->compressed ? 0 : fr->width * 2u;
}

/* dwMaxVideoFrameSize: the C920 reports width * height * 2 for MJPG as for YUYV. */
static uint32_t sizeimage(const struct fc_frame *fr)
{
	return (uint32_t)fr->width * fr->height * 2u;
}

/* ---- privileges (uvc_acquire_privileges) ---- */

static void hold_queue(struct fc_handle *h, struct fc_queue *q);

static int is_owner(struct fc_handle *h)
{
	struct fc_shared *sh = h->cam->sh;
	return sh->owner_handle == h->id && sh->owner_pid == getpid();
}

static int acquire(struct fc_handle *h)
{
	struct fc_cam *c = h->cam;
	int ret = 0;
	fc_lock(c);
	struct fc_shared *sh = c->sh;
	if (sh->owner_handle != h->id) {
		if (sh->owner_handle && fc_pid_alive(sh->owner_pid)) {
			ret = -1;
		} else {
			/* the previous owner died without closing: the kernel would have
			 * released its file */
			sh->owner_pid = getpid();
			sh->owner_handle = h->id;
			sh->streaming = 0;
		}
	}
	fc_unlock(c);
	if (ret)
		ERR(EBUSY);
	hold_queue(h, queue_of(h));
	return 0;
}

static void dismiss(struct fc_handle *h)
{
	struct fc_cam *c = h->cam;
	fc_lock(c);
	if (c->sh->owner_handle == h->id) {
		c->sh->owner_handle = 0;
		c->sh->owner_pid = 0;
		c->sh->streaming = 0;
	}
	fc_unlock(c);
}

/*
 * FAKECAM_UVC=vb2: uvcvideo as of Linux 6.16, which uses the vb2 ioctl helpers: only
 * REQBUFS/CREATE_BUFS take the queue, S_FMT/S_PARM/S_INPUT just fail with EBUSY while
 * another handle has buffers, and queue ioctls on a queue nobody owns act on an empty queue
 * (STREAMON: EINVAL). The default is the "privileges" of the kernels before.
 */
static int vb2_mode(void)
{
	static int mode = -1;
	if (mode < 0) {
		const char *v = getenv("FAKECAM_UVC");
		mode = v && !strcmp(v, "vb2");
	}
	return mode;
}

static int other_owner(struct fc_handle *h)
{
	struct fc_shared *sh = h->cam->sh;
	return sh->owner_handle && sh->owner_handle != h->id && fc_pid_alive(sh->owner_pid);
}

/* S_FMT, S_PARM, S_INPUT */
static int acquire_for_setting(struct fc_handle *h)
{
	if (!vb2_mode())
		return acquire(h);
	if (other_owner(h))
		ERR(EBUSY);
	return 0;
}

/* QBUF, DQBUF, STREAMON, STREAMOFF, EXPBUF, QUERYBUF */
static int may_use_queue(struct fc_handle *h)
{
	if (is_owner(h))
		return 1;
	if (!vb2_mode() || other_owner(h))
		return 0;
	hold_queue(h, queue_of(h)); /* nobody's queue: an empty one */
	return 1;
}

/* ---- priorities (v4l2_prio_*), kept per process ---- */

static int prio_max(struct fc_cam *c)
{
	for (int p = V4L2_PRIORITY_RECORD; p > V4L2_PRIORITY_UNSET; p--)
		if (prio_count[c->index][p] > 0)
			return p;
	return V4L2_PRIORITY_UNSET;
}

static int prio_check(struct fc_handle *h)
{
	if (h->prio < prio_max(h->cam))
		ERR(EBUSY);
	return 0;
}

/* ---- numbers ---- */

/* The best fraction for n/d with small terms: a continued fraction of at most 8 terms, cut
 * at the first term of 333 or more (what v4l2_simplify_fraction gives userspace). */
static void simplify(uint32_t *num, uint32_t *den)
{
	uint32_t terms[8];
	uint32_t x = *num, y = *den;
	unsigned n = 0;
	while (n < 8 && y) {
		terms[n] = x / y;
		if (terms[n] >= 333) {
			if (n < 2)
				n++;
			break;
		}
		uint32_t r = x - terms[n] * y;
		x = y;
		y = r;
		n++;
	}
	uint32_t a = 0, b = 1; /* rebuild from the last term: value = b / a */
	for (unsigned i = n; i > 0; i--) {
		uint32_t t = b;
		b = terms[i - 1] * b + a;
		a = t;
	}
	*num = b;
	*den = a;
}

/* timeperframe to 100 ns units, saturating like uvcvideo. */
static uint32_t to_interval(uint32_t num, uint32_t den)
{
	if (den == 0 || num / den >= UINT32_MAX / 10000000u)
		return UINT32_MAX;
	uint32_t mult = 10000000;
	while (num > UINT32_MAX / mult) {
		mult /= 2;
		den /= 2;
	}
	return den ? (uint32_t)((uint64_t)num * mult / den) : 0;
}

/* uvc_try_frame_interval: walk the (ascending) intervals while they get closer. */
static uint32_t nearest_interval(const struct fc_frame *fr, uint32_t want)
{
	uint32_t best = UINT32_MAX;
	int i;
	for (i = 0; i < fr->nivals; i++) {
		uint32_t d = want > fr->ivals[i] ? want - fr->ivals[i] : fr->ivals[i] - want;
		if (d > best)
			break;
		best = d;
	}
	return fr->ivals[i - 1];
}

static uint64_t kernel_version(void)
{
	struct utsname u;
	unsigned a = 6, b = 1, c = 0;
	if (!uname(&u))
		sscanf(u.release, "%u.%u.%u", &a, &b, &c);
	return (a << 16) | (b << 8) | (c > 255 ? 255 : c);
}

/* ---- formats ---- */

/* What uvcvideo reports for a frame size of a format: progressive sRGB, bytes per line and
 * image size from the format. ``priv`` is kept as the caller decides (TRY_FMT echoes it). */
static void fill_pix(struct v4l2_pix_format *pix, const struct fc_format *fmt,
		     const struct fc_frame *fr, uint32_t priv)
{
	memset(pix, 0, sizeof(*pix));
	pix->width = fr->width;
	pix->height = fr->height;
	pix->pixelformat = fmt->fourcc;
	pix->field = V4L2_FIELD_NONE;
	pix->bytesperline = bytesperline(fmt, fr);
	pix->sizeimage = sizeimage(fr);
	pix->colorspace = V4L2_COLORSPACE_SRGB;
	pix->xfer_func = V4L2_XFER_FUNC_709;
	pix->ycbcr_enc = V4L2_YCBCR_ENC_601;
	pix->priv = priv;
}

/* uvc_v4l2_try_format: unknown fourcc -> the default format; the size nearest by the area
 * the two rectangles do not share; the frame's default interval. */
static void try_format(struct fc_cam *c, struct v4l2_format *f, int *fi, int *fri)
{
	const struct fc_profile *p = c->profile;
	int idx = 0;
	for (int i = 0; i < p->nformats; i++)
		if (p->formats[i].fourcc == f->fmt.pix.pixelformat)
			idx = i;
	if (p->formats[idx].fourcc != f->fmt.pix.pixelformat)
		idx = 0;
	const struct fc_format *fmt = &p->formats[idx];
	uint32_t rw = f->fmt.pix.width > 65535 ? 65535 : f->fmt.pix.width;
	uint32_t rh = f->fmt.pix.height > 65535 ? 65535 : f->fmt.pix.height;
	unsigned best = UINT32_MAX;
	int bi = 0;
	for (int i = 0; i < fmt->nframes; i++) {
		uint32_t w = fmt->frames[i].width, h = fmt->frames[i].height;
		uint32_t common = (w < rw ? w : rw) * (h < rh ? h : rh);
		unsigned d = w * h + rw * rh - 2 * common;
		if (d < best) {
			best = d;
			bi = i;
		}
		if (!best)
			break;
	}
	const struct fc_frame *fr = &fmt->frames[bi];
	fill_pix(&f->fmt.pix, fmt, fr, f->fmt.pix.priv);
	if (fi)
		*fi = idx;
	if (fri)
		*fri = bi;
}

/* v4l_sanitize_format: without the magic, the extended fields are zeroed. */
static void sanitize_format(struct v4l2_format *f)
{
	if (f->fmt.pix.priv != V4L2_PIX_FMT_PRIV_MAGIC) {
		size_t off = offsetof(struct v4l2_pix_format, priv) + sizeof(f->fmt.pix.priv);
		memset((char *)&f->fmt.pix + off, 0, sizeof(f->fmt.pix) - off);
	}
	f->fmt.pix.priv = V4L2_PIX_FMT_PRIV_MAGIC;
	/* the rest of the union after the pix format is cleared by v4l2-core */
	memset((char *)&f->fmt + sizeof(f->fmt.pix), 0, sizeof(f->fmt) - sizeof(f->fmt.pix));
}

static void get_format(struct fc_cam *c, struct v4l2_format *f)
{
	const struct fc_format *fmt = cur_format(c);
	const struct fc_frame *fr = cur_frame(c);
	memset(&f->fmt, 0, sizeof(f->fmt));
	fill_pix(&f->fmt.pix, fmt, fr, V4L2_PIX_FMT_PRIV_MAGIC);
}

/* ---- controls ---- */

static int ctrl_inactive(struct fc_cam *c, const struct fc_ctrl *k)
{
	int mi;
	if (!k->master_id || !fc_ctrl_find(c->profile, k->master_id, &mi))
		return 0;
	return c->sh->ctrl[mi] != k->master_manual;
}

static uint32_t class_of(uint32_t id)
{
	return V4L2_CTRL_ID2WHICH(id) | 1;
}

static int has_class(struct fc_cam *c, uint32_t cls)
{
	for (int i = 0; i < c->profile->nctrls; i++)
		if (class_of(c->profile->ctrls[i].id) == cls)
			return 1;
	return 0;
}

/* uvc_query_v4l2_ctrl, for both QUERYCTRL and QUERY_EXT_CTRL. */
static int query_ctrl(struct fc_cam *c, uint32_t req, struct v4l2_query_ext_ctrl *q)
{
	const struct fc_profile *p = c->profile;
	int next = (req & V4L2_CTRL_FLAG_NEXT_CTRL) != 0;
	uint32_t id = req & V4L2_CTRL_ID_MASK;
	static const uint32_t classes[] = {V4L2_CID_CAMERA_CLASS, V4L2_CID_USER_CLASS};
	int found = -1;
	uint32_t cls = 0;

	if (!next) {
		for (int i = 0; i < 2; i++)
			if (classes[i] == id && has_class(c, id))
				cls = id;
	}
	if (!cls) {
		for (int i = 0; i < p->nctrls; i++) {
			if (next ? p->ctrls[i].id > id &&
					   (found < 0 || p->ctrls[i].id < p->ctrls[found].id)
				 : p->ctrls[i].id == id)
				found = i;
		}
		if (found < 0)
			ERR(EINVAL);
		/* enumerating: a class heading goes between the previous control and this one */
		if (next)
			for (int i = 0; i < 2; i++)
				if (has_class(c, classes[i]) && classes[i] > id &&
				    classes[i] < p->ctrls[found].id)
					cls = classes[i];
	}
	memset(q, 0, sizeof(*q));
	q->elem_size = 4;
	q->elems = 1;
	if (cls) {
		q->id = cls;
		q->type = V4L2_CTRL_TYPE_CTRL_CLASS;
		snprintf(q->name, sizeof(q->name), "%s",
			 cls == V4L2_CID_USER_CLASS ? "User Controls" : "Camera Controls");
		q->flags = V4L2_CTRL_FLAG_READ_ONLY | V4L2_CTRL_FLAG_WRITE_ONLY;
		return 0;
	}
	const struct fc_ctrl *k = &p->ctrls[found];
	q->id = k->id;
	q->type = k->type;
	snprintf(q->name, sizeof(q->name), "%s", k->name);
	q->minimum = k->min;
	q->maximum = k->max;
	q->step = k->step;
	q->default_value = k->def;
	if (ctrl_inactive(c, k))
		q->flags |= V4L2_CTRL_FLAG_INACTIVE;
	return 0;
}

static void fill_ctrl_event(struct fc_cam *c, int ci, uint32_t changes, struct v4l2_event *ev)
{
	const struct fc_ctrl *k = &c->profile->ctrls[ci];
	memset(ev, 0, sizeof(*ev));
	ev->type = V4L2_EVENT_CTRL;
	ev->id = k->id;
	ev->u.ctrl.changes = changes;
	ev->u.ctrl.type = k->type;
	ev->u.ctrl.value = c->sh->ctrl[ci];
	ev->u.ctrl.flags = ctrl_inactive(c, k) ? V4L2_CTRL_FLAG_INACTIVE : 0;
	ev->u.ctrl.minimum = k->min;
	ev->u.ctrl.maximum = k->max;
	ev->u.ctrl.step = k->step;
	ev->u.ctrl.default_value = k->def;
}

/* A ctrl event holds one pending event per subscription; a newer one replaces it and keeps
 * the older changes (v4l2_event_ctrl_replace). */
static void queue_event(struct fc_handle *h, struct fc_sub *s, const struct v4l2_event *ev)
{
	if (s->pending) {
		uint32_t old = s->ev.u.ctrl.changes;
		s->ev.u.ctrl = ev->u.ctrl;
		s->ev.u.ctrl.changes |= old;
		return;
	}
	s->ev = *ev;
	s->ev.sequence = h->ev_sequence++;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	s->ev.timestamp = ts;
	s->pending = 1;
	s->order = h->ev_order++;
}

/* Events go to the subscribers in this process (other processes do not see them). */
static void send_ctrl_event(struct fc_handle *from, int ci, uint32_t changes)
{
	struct fc_cam *c = from->cam;
	struct v4l2_event ev;
	fill_ctrl_event(c, ci, changes, &ev);
	for (struct fc_handle *h = all_handles; h; h = h->link) {
		if (h->cam != c || h->generation != from->generation)
			continue;
		for (int i = 0; i < h->nsubs; i++) {
			struct fc_sub *s = &h->subs[i];
			if (s->id != ev.id)
				continue;
			if (h == from && !(s->flags & V4L2_EVENT_SUB_FL_ALLOW_FEEDBACK))
				continue;
			queue_event(h, s, &ev);
		}
	}
}

static int events_pending(struct fc_handle *h)
{
	int n = 0;
	for (int i = 0; i < h->nsubs; i++)
		n += h->subs[i].pending;
	return n;
}

/* uvc_ctrl_is_accessible */
static int ctrl_access(struct fc_cam *c, const struct v4l2_ext_controls *cs, uint32_t id,
		       unsigned long ioctl)
{
	if ((id == V4L2_CID_USER_CLASS || id == V4L2_CID_CAMERA_CLASS) && has_class(c, id))
		return -EACCES;
	const struct fc_ctrl *k = fc_ctrl_find(c->profile, id, NULL);
	if (!k)
		return -EINVAL;
	if (ioctl != VIDIOC_S_EXT_CTRLS || !k->master_id)
		return 0;
	/* a master set in the same call counts, the last occurrence winning */
	for (int i = (int)cs->count - 1; i >= 0; i--)
		if (cs->controls[i].id == k->master_id)
			return cs->controls[i].value == k->master_manual ? 0 : -EACCES;
	return ctrl_inactive(c, k) ? -EACCES : 0;
}

/* uvc_ctrl_clamp */
static int ctrl_clamp(const struct fc_ctrl *k, int32_t *v)
{
	switch (k->type) {
	case V4L2_CTRL_TYPE_INTEGER: {
		int64_t step = k->step ? k->step : 1;
		uint32_t off = (uint32_t)(*v - k->min);
		int64_t val = k->min + (int64_t)((off + step / 2) / step) * step;
		if (val < k->min)
			val = k->min;
		if (val > k->max)
			val = k->max;
		*v = (int32_t)val;
		return 0;
	}
	case V4L2_CTRL_TYPE_BOOLEAN:
		*v = *v < 0 ? 0 : *v > 1 ? 1 : *v;
		return 0;
	case V4L2_CTRL_TYPE_MENU:
		if (*v < k->min || *v > k->max)
			return -ERANGE;
		if (!(k->menu_mask & (1u << *v)))
			return -EINVAL;
		return 0;
	}
	return 0;
}

/* v4l2-core's check_ext_ctrls */
static int check_ext_ctrls(struct v4l2_ext_controls *cs, unsigned long ioctl)
{
	cs->reserved[0] = 0;
	if (cs->count > V4L2_CID_MAX_CTRLS)
		return -EINVAL;
	for (uint32_t i = 0; i < cs->count; i++)
		cs->controls[i].reserved2[0] = 0;
	switch (cs->which) {
	case V4L2_CID_PRIVATE_BASE:
		return -EINVAL;
	case V4L2_CTRL_WHICH_DEF_VAL:
		if (ioctl == VIDIOC_S_EXT_CTRLS || ioctl == VIDIOC_TRY_EXT_CTRLS) {
			cs->error_idx = cs->count;
			return -EINVAL;
		}
		return 0;
	case V4L2_CTRL_WHICH_CUR_VAL:
		return 0;
	case V4L2_CTRL_WHICH_REQUEST_VAL:
		cs->error_idx = cs->count;
		return -EINVAL;
	}
	for (uint32_t i = 0; i < cs->count; i++)
		if (V4L2_CTRL_ID2WHICH(cs->controls[i].id) != cs->which) {
			cs->error_idx = ioctl == VIDIOC_TRY_EXT_CTRLS ? i : cs->count;
			return -EINVAL;
		}
	return 0;
}

/* What G, S and TRY_EXT_CTRLS check before touching a value: the array, then each control's
 * access. On a refused control, TRY names it in error_idx, G and S name none (the count). */
static int ext_ctrls_access(struct fc_cam *c, struct v4l2_ext_controls *cs, unsigned long ioctl)
{
	cs->error_idx = cs->count;
	int r = check_ext_ctrls(cs, ioctl);
	if (r)
		return r;
	for (uint32_t i = 0; i < cs->count; i++) {
		r = ctrl_access(c, cs, cs->controls[i].id, ioctl);
		if (r) {
			cs->error_idx = ioctl == VIDIOC_TRY_EXT_CTRLS ? i : cs->count;
			return r;
		}
	}
	return 0;
}

static int g_ext_ctrls(struct fc_handle *h, struct v4l2_ext_controls *cs)
{
	struct fc_cam *c = h->cam;
	int r = ext_ctrls_access(c, cs, VIDIOC_G_EXT_CTRLS);
	if (r)
		ERR(-r);
	if (!cs->count)
		return 0;
	for (uint32_t i = 0; i < cs->count; i++) {
		int ci;
		const struct fc_ctrl *k = fc_ctrl_find(c->profile, cs->controls[i].id, &ci);
		cs->controls[i].value = cs->which == V4L2_CTRL_WHICH_DEF_VAL ? k->def : c->sh->ctrl[ci];
	}
	cs->error_idx = 0;
	return 0;
}

static int s_ext_ctrls(struct fc_handle *h, struct v4l2_ext_controls *cs, unsigned long ioctl)
{
	struct fc_cam *c = h->cam;
	int r = ext_ctrls_access(c, cs, ioctl);
	if (r)
		ERR(-r);
	if (!cs->count)
		return 0;
	for (uint32_t i = 0; i < cs->count; i++) {
		const struct fc_ctrl *k = fc_ctrl_find(c->profile, cs->controls[i].id, NULL);
		int32_t v = cs->controls[i].value;
		r = ctrl_clamp(k, &v);
		cs->controls[i].value = v;
		if (r) {
			cs->error_idx = ioctl == VIDIOC_S_EXT_CTRLS ? cs->count : i;
			ERR(-r);
		}
	}
	cs->error_idx = 0;
	if (ioctl != VIDIOC_S_EXT_CTRLS)
		return 0;
	int changed[FC_MAX_CTRLS] = {0};
	fc_lock(c);
	for (uint32_t i = 0; i < cs->count; i++) {
		int ci;
		fc_ctrl_find(c->profile, cs->controls[i].id, &ci);
		c->sh->ctrl[ci] = cs->controls[i].value;
		changed[ci] = 1;
	}
	fc_unlock(c);
	const struct fc_profile *p = c->profile;
	for (int ci = 0; ci < p->nctrls; ci++) {
		if (!changed[ci])
			continue;
		uint32_t ch = V4L2_EVENT_CTRL_CH_VALUE;
		if (p->ctrls[ci].master_id) {
			int mi;
			if (fc_ctrl_find(p, p->ctrls[ci].master_id, &mi) && changed[mi])
				ch |= V4L2_EVENT_CTRL_CH_FLAGS;
		}
		send_ctrl_event(h, ci, ch);
		/* a master's slaves change their inactive flag */
		for (int si = 0; si < p->nctrls; si++)
			if (p->ctrls[si].master_id == p->ctrls[ci].id && !changed[si])
				send_ctrl_event(h, si, V4L2_EVENT_CTRL_CH_FLAGS);
	}
	return 0;
}

/* ---- buffers ---- */

static void free_buffers(struct fc_queue *q)
{
	for (int i = 0; i < q->nbufs; i++) {
		struct fc_buf *b = &q->bufs[i];
		if (b->map)
			fc_real.munmap(b->map, b->size);
		if (b->memfd >= 0)
			fc_real.close(b->memfd);
	}
	memset(q->bufs, 0, sizeof(q->bufs));
	q->nbufs = 0;
	q->memory = 0;
	q->nqueued = q->ndone = 0;
}

static int alloc_buffers(struct fc_queue *q, int memory, int count, uint32_t size)
{
	long page = sysconf(_SC_PAGESIZE);
	uint32_t aligned = (uint32_t)((size + page - 1) / page * page);
	int n = 0;
	uint32_t offset = 0;
	for (int i = 0; i < q->nbufs; i++)
		offset = q->bufs[i].offset + ((q->bufs[i].size + page - 1) / page * page);
	for (; n < count && q->nbufs < FC_MAX_BUFFERS; n++) {
		struct fc_buf *b = &q->bufs[q->nbufs];
		memset(b, 0, sizeof(*b));
		b->memfd = -1;
		b->size = size;
		b->ulength = size; /* vb2 reports the plane size until a USERPTR is queued */
		if (memory == V4L2_MEMORY_MMAP) {
			b->memfd = memfd_create("fakecam-buffer", MFD_CLOEXEC);
			if (b->memfd < 0 || ftruncate(b->memfd, aligned)) {
				if (b->memfd >= 0)
					fc_real.close(b->memfd);
				break;
			}
			b->map = fc_real.mmap(NULL, aligned, PROT_READ | PROT_WRITE, MAP_SHARED,
					      b->memfd, 0);
			if (b->map == MAP_FAILED) {
				fc_real.close(b->memfd);
				b->map = NULL;
				break;
			}
			b->offset = offset;
			offset += aligned;
		}
		q->nbufs++;
	}
	if (n)
		q->memory = memory;
	return n;
}

static int buf_mapped(const struct fc_buf *b)
{
	for (int i = 0; i < 4; i++)
		if (b->maps[i])
			return 1;
	return 0;
}

/* vb2's __fill_v4l2_buffer */
static void fill_buf(struct fc_queue *q, int i, struct v4l2_buffer *v)
{
	struct fc_buf *b = &q->bufs[i];
	memset(v, 0, sizeof(*v));
	v->index = i;
	v->type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
	v->memory = q->memory;
	v->bytesused = b->bytesused;
	v->field = V4L2_FIELD_NONE;
	v->timestamp = b->ts;
	v->sequence = b->sequence;
	v->flags = V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC | V4L2_BUF_FLAG_TSTAMP_SRC_SOE;
	if (b->state == B_QUEUED)
		v->flags |= V4L2_BUF_FLAG_QUEUED;
	if (b->state == B_DONE)
		v->flags |= V4L2_BUF_FLAG_DONE | (b->error ? V4L2_BUF_FLAG_ERROR : 0);
	if (q->memory == V4L2_MEMORY_MMAP) {
		v->m.offset = b->offset;
		v->length = b->size;
		if (buf_mapped(b))
			v->flags |= V4L2_BUF_FLAG_MAPPED;
	} else {
		v->m.userptr = b->userptr;
		v->length = b->ulength;
	}
}

/* Completes the frames due by now into the queued buffers. */
static void advance(struct fc_cam *c, struct fc_queue *q, uint64_t now)
{
	if (!q->streaming || !q->ival_ns)
		return;
	struct fc_shared *sh = c->sh;
	uint64_t ival = q->ival_ns;
	int fault = __atomic_load_n(&sh->fault, __ATOMIC_ACQUIRE);
	if (fault == FC_FAULT_STALL || c->profile->dead) {
		/* the camera sends nothing: no frame exists, so none is counted */
		if (now >= q->t0 + ival) {
			uint64_t cur = (now - q->t0) / ival;
			if (cur > q->next_k) {
				q->lost_to_stall += cur - q->next_k;
				q->next_k = cur;
			}
		}
		return;
	}
	while (q->nqueued) {
		struct fc_buf *b = &q->bufs[q->order[0]];
		uint64_t k = q->next_k;
		/* the first frame to complete after the buffer was queued */
		if (b->queued_ns > q->t0 + ival) {
			uint64_t kmin = (b->queued_ns - q->t0 + ival - 1) / ival - 1;
			if (kmin > k)
				k = kmin;
		}
		uint64_t due = q->t0 + (k + 1) * ival;
		if (due > now)
			break;
		struct fc_buffer_fill f = {
			.dst = q->memory == V4L2_MEMORY_MMAP ? b->map : (uint8_t *)b->userptr,
			.cap = q->memory == V4L2_MEMORY_MMAP ? b->size : b->ulength,
			.fourcc = q->fourcc,
			.width = q->width,
			.height = q->height,
			.sequence = k - q->lost_to_stall,
			.fault = fault,
		};
		int error = 0;
		b->bytesused = (uint32_t)fc_fill_frame(c, &f, &error);
		b->error = error;
		b->sequence = (uint32_t)f.sequence;
		uint64_t start = due - ival; /* uvcvideo stamps the start of the frame */
		b->ts.tv_sec = (time_t)(start / 1000000000ULL);
		b->ts.tv_usec = (suseconds_t)(start % 1000000000ULL / 1000);
		b->state = B_DONE;
		memmove(q->order, q->order + 1, (size_t)(q->nqueued - 1) * sizeof(int));
		q->nqueued--;
		q->done[q->ndone++] = (int)(b - q->bufs);
		q->next_k = k + 1;
		__atomic_fetch_add(&sh->frames_delivered, 1, __ATOMIC_RELAXED);
		if (fault == FC_FAULT_CORRUPT)
			__atomic_fetch_add(&sh->frames_corrupted, 1, __ATOMIC_RELAXED);
	}
}

/* When the next frame falls due, for poll() to sleep until then; 0 if none will. */
static uint64_t next_due(struct fc_cam *c, struct fc_queue *q)
{
	if (!q->streaming || !q->nqueued || c->profile->dead || c->sh->fault == FC_FAULT_STALL)
		return 0;
	struct fc_buf *b = &q->bufs[q->order[0]];
	uint64_t k = q->next_k, ival = q->ival_ns;
	if (b->queued_ns > q->t0 + ival) {
		uint64_t kmin = (b->queued_ns - q->t0 + ival - 1) / ival - 1;
		if (kmin > k)
			k = kmin;
	}
	return q->t0 + (k + 1) * ival;
}

static void stop_streaming(struct fc_handle *h, struct fc_queue *q)
{
	q->streaming = 0;
	for (int i = 0; i < q->nbufs; i++)
		q->bufs[i].state = B_DEQUEUED;
	q->nqueued = q->ndone = 0;
	fc_lock(h->cam);
	if (h->cam->sh->owner_handle == h->id)
		h->cam->sh->streaming = 0;
	fc_unlock(h->cam);
}

/* The privileged handle takes the queue; what a handle of an older generation (the camera
 * was unplugged since) left in it goes, as the kernel freed it with the old device. */
static void hold_queue(struct fc_handle *h, struct fc_queue *q)
{
	if (q->holder && q->holder != h) {
		q->streaming = 0;
		free_buffers(q);
	}
	q->holder = h;
}

static struct fc_queue *held_queue(struct fc_handle *h)
{
	struct fc_queue *q = queue_of(h);
	return q->holder == h ? q : NULL;
}

static int check_type(uint32_t type)
{
	if (type != V4L2_BUF_TYPE_VIDEO_CAPTURE)
		ERR(EINVAL);
	return 0;
}

static int reqbufs(struct fc_handle *h, struct v4l2_requestbuffers *rb)
{
	struct fc_queue *q = queue_of(h);
	if (prio_check(h) || acquire(h))
		return -1;
	if (rb->memory != V4L2_MEMORY_MMAP && rb->memory != V4L2_MEMORY_USERPTR)
		ERR(EINVAL);
	if (check_type(rb->type))
		return -1;
	rb->capabilities = V4L2_BUF_CAP_SUPPORTS_MMAP | V4L2_BUF_CAP_SUPPORTS_USERPTR |
			   V4L2_BUF_CAP_SUPPORTS_ORPHANED_BUFS;
	rb->flags = 0;
	memset(rb->reserved, 0, sizeof(rb->reserved));
	hold_queue(h, q);
	if (q->streaming)
		ERR(EBUSY);
	free_buffers(q);
	if (rb->count == 0) {
		dismiss(h);
		return 0;
	}
	uint32_t want = rb->count > FC_MAX_BUFFERS ? FC_MAX_BUFFERS : rb->count;
	q->sizeimage = sizeimage(cur_frame(h->cam));
	int n = alloc_buffers(q, (int)rb->memory, (int)want, q->sizeimage);
	if (!n)
		ERR(ENOMEM);
	rb->count = (uint32_t)n;
	return 0;
}

static int create_bufs(struct fc_handle *h, struct v4l2_create_buffers *cb)
{
	struct fc_queue *q = queue_of(h);
	/* v4l_create_bufs: the format's type, then everything after capabilities is cleared */
	if (check_type(cb->format.type))
		return -1;
	cb->flags = 0;
	memset(cb->reserved, 0, sizeof(cb->reserved));
	sanitize_format(&cb->format);
	if (prio_check(h) || acquire(h))
		return -1;
	cb->capabilities = V4L2_BUF_CAP_SUPPORTS_MMAP | V4L2_BUF_CAP_SUPPORTS_USERPTR |
			   V4L2_BUF_CAP_SUPPORTS_ORPHANED_BUFS;
	if (cb->memory != V4L2_MEMORY_MMAP && cb->memory != V4L2_MEMORY_USERPTR)
		ERR(EINVAL);
	hold_queue(h, q);
	cb->index = (uint32_t)q->nbufs;
	if (cb->count == 0)
		return 0;
	if (cb->format.fmt.pix.sizeimage == 0)
		ERR(EINVAL);
	if (q->nbufs && (int)cb->memory != q->memory)
		ERR(EINVAL);
	if (q->nbufs == FC_MAX_BUFFERS)
		ERR(ENOBUFS);
	uint32_t need = sizeimage(cur_frame(h->cam));
	if (cb->format.fmt.pix.sizeimage < need)
		ERR(EINVAL);
	if (!q->nbufs)
		q->sizeimage = need;
	int n = alloc_buffers(q, (int)cb->memory, (int)cb->count, cb->format.fmt.pix.sizeimage);
	if (!n)
		ERR(ENOMEM);
	cb->count = (uint32_t)n;
	return 0;
}

/* Whether [ptr, ptr + len) is mapped in this process, as pinning the pages would need. */
static int user_memory_ok(unsigned long ptr, uint32_t len)
{
	long page = sysconf(_SC_PAGESIZE);
	if (!ptr || ptr + len < ptr)
		return 0;
	unsigned long start = ptr & ~(unsigned long)(page - 1);
	size_t span = (size_t)(ptr + len - start);
	size_t pages = (span + page - 1) / page;
	unsigned char stack[256];
	unsigned char *vec = pages <= sizeof(stack) ? stack : malloc(pages);
	if (!vec)
		return 0;
	int ok = mincore((void *)start, span, vec) == 0;
	if (vec != stack)
		free(vec);
	return ok;
}

static int qbuf(struct fc_handle *h, struct v4l2_buffer *v)
{
	struct fc_queue *q = queue_of(h);
	if (!may_use_queue(h))
		ERR(EBUSY);
	if (check_type(v->type))
		return -1;
	if (v->index >= (uint32_t)q->nbufs)
		ERR(EINVAL);
	if ((int)v->memory != q->memory)
		ERR(EINVAL);
	struct fc_buf *b = &q->bufs[v->index];
	if (b->state != B_DEQUEUED)
		ERR(EINVAL);
	if (q->memory == V4L2_MEMORY_USERPTR) {
		if (v->length < b->size)
			ERR(EINVAL);
		if (!user_memory_ok(v->m.userptr, v->length))
			ERR(EFAULT); /* vb2 cannot pin memory that is not mapped */
		b->userptr = v->m.userptr;
		b->ulength = v->length;
	}
	b->state = B_QUEUED;
	b->queued_ns = fc_now_ns();
	b->bytesused = 0;
	b->error = 0;
	q->order[q->nqueued++] = (int)v->index;
	fill_buf(q, (int)v->index, v);
	return 0;
}

static void pop_done(struct fc_queue *q, struct v4l2_buffer *v)
{
	int i = q->done[0];
	memmove(q->done, q->done + 1, (size_t)(q->ndone - 1) * sizeof(int));
	q->ndone--;
	fill_buf(q, i, v);
	v->flags &= ~V4L2_BUF_FLAG_DONE; /* vb2_dqbuf clears DONE */
	q->bufs[i].state = B_DEQUEUED;
}

/* vb2's __vb2_wait_for_done_vb; the lock is held on entry and on return. */
static int dqbuf(struct fc_handle *h, struct v4l2_buffer *v)
{
	struct fc_queue *q = queue_of(h);
	struct fc_cam *c = h->cam;
	if (!may_use_queue(h))
		ERR(EBUSY);
	if (check_type(v->type))
		return -1;
	int nonblock = (fcntl(h->fd, F_GETFL) & O_NONBLOCK) != 0;
	int waited = 0;
	for (;;) {
		if (dead(h)) {
			/* uvcvideo returns the queued buffers marked as errored when the device
			 * goes away under a waiting DQBUF; later calls find the node gone */
			if (waited && q->nqueued) {
				int i = q->order[0];
				memmove(q->order, q->order + 1, (size_t)(q->nqueued - 1) * sizeof(int));
				q->nqueued--;
				q->bufs[i].state = B_DONE;
				q->bufs[i].error = 1;
				q->bufs[i].bytesused = 0;
				q->done[q->ndone++] = i;
				pop_done(q, v);
				return 0;
			}
			ERR(ENODEV);
		}
		if (!q->streaming)
			ERR(EINVAL);
		uint64_t now = fc_now_ns();
		advance(c, q, now);
		if (q->ndone) {
			pop_done(q, v);
			return 0;
		}
		if (nonblock)
			ERR(EAGAIN);
		uint64_t due = next_due(c, q), sleep_ns = 20000000;
		if (due && due > now && due - now < sleep_ns)
			sleep_ns = due - now;
		struct timespec ts = {0, (long)sleep_ns};
		waited = 1;
		pthread_mutex_unlock(&lock);
		int r = nanosleep(&ts, NULL);
		pthread_mutex_lock(&lock);
		if (r && errno == EINTR)
			ERR(EINTR);
	}
}

static int streamon(struct fc_handle *h, const int *type)
{
	struct fc_queue *q = queue_of(h);
	struct fc_cam *c = h->cam;
	if (prio_check(h))
		return -1;
	if (!may_use_queue(h))
		ERR(EBUSY);
	if (check_type((uint32_t)*type))
		return -1;
	if (q->streaming)
		return 0;
	if (!q->nbufs)
		ERR(EINVAL);
	/* uvc_video_init finds no alternate setting with the bandwidth the format needs */
	if (c->sh->fault == FC_FAULT_NOSPACE)
		ERR(ENOSPC);
	const struct fc_format *fmt = cur_format(c);
	const struct fc_frame *fr = cur_frame(c);
	q->fourcc = fmt->fourcc;
	q->width = fr->width;
	q->height = fr->height;
	q->ival_ns = (uint64_t)c->sh->interval * 100;
	q->t0 = fc_now_ns();
	q->next_k = 0;
	q->lost_to_stall = 0;
	q->streaming = 1;
	if (fmt->compressed)
		fc_frames_reload(c);
	fc_lock(c);
	c->sh->streaming = 1;
	fc_unlock(c);
	fc_log("fakecam: video%d streams %.4s %dx%d every %llu us", c->sh->node,
	       (const char *)&q->fourcc, q->width, q->height,
	       (unsigned long long)(q->ival_ns / 1000));
	return 0;
}

static int streamoff(struct fc_handle *h, const int *type)
{
	struct fc_queue *q = queue_of(h);
	if (prio_check(h))
		return -1;
	if (!may_use_queue(h))
		ERR(EBUSY);
	if (check_type((uint32_t)*type))
		return -1;
	stop_streaming(h, q);
	return 0;
}

static int expbuf(struct fc_handle *h, struct v4l2_exportbuffer *e)
{
	struct fc_queue *q = queue_of(h);
	if (!may_use_queue(h))
		ERR(EBUSY);
	if (q->memory != V4L2_MEMORY_MMAP)
		ERR(EINVAL);
	if (e->flags & ~(O_CLOEXEC | O_ACCMODE))
		ERR(EINVAL);
	if (check_type(e->type))
		return -1;
	if (e->index >= (uint32_t)q->nbufs || e->plane != 0)
		ERR(EINVAL);
	int fd = fcntl(q->bufs[e->index].memfd, (e->flags & O_CLOEXEC) ? F_DUPFD_CLOEXEC : F_DUPFD,
		       0);
	if (fd < 0)
		return -1;
	e->fd = fd;
	return 0;
}

/* ---- the ioctl switch ---- */

static int do_ioctl(struct fc_handle *h, unsigned long req, void *arg)
{
	struct fc_cam *c = h->cam;
	struct fc_shared *sh = c->sh;
	const struct fc_profile *p = c->profile;

	switch (req) {
	case VIDIOC_QUERYCAP: {
		struct v4l2_capability *cap = arg;
		memset(cap, 0, sizeof(*cap));
		snprintf((char *)cap->driver, sizeof(cap->driver), "uvcvideo");
		snprintf((char *)cap->card, sizeof(cap->card), "%s", p->card);
		snprintf((char *)cap->bus_info, sizeof(cap->bus_info), "usb-0000:00:14.0-%d",
			 c->index + 1);
		cap->version = (uint32_t)kernel_version();
		/* the capture node's caps, and the union over the device's nodes (with its
		 * metadata node): 0x04200001 and 0x84a00001, as a C920 shows */
		cap->device_caps = V4L2_CAP_VIDEO_CAPTURE | V4L2_CAP_STREAMING |
				   V4L2_CAP_EXT_PIX_FORMAT;
		cap->capabilities = cap->device_caps | V4L2_CAP_META_CAPTURE | V4L2_CAP_DEVICE_CAPS;
		return 0;
	}
	case VIDIOC_ENUM_FMT: {
		struct v4l2_fmtdesc *d = arg;
		if (check_type(d->type))
			return -1;
		uint32_t index = d->index;
		memset((char *)d + offsetof(struct v4l2_fmtdesc, flags), 0,
		       sizeof(*d) - offsetof(struct v4l2_fmtdesc, flags));
		if (index >= (uint32_t)p->nformats)
			ERR(EINVAL);
		const struct fc_format *f = &p->formats[index];
		d->pixelformat = f->fourcc;
		/* descriptions and flags are v4l2-core's (v4l_fill_fmtdesc) */
		if (f->compressed) {
			d->flags = V4L2_FMT_FLAG_COMPRESSED;
			snprintf((char *)d->description, sizeof(d->description), "Motion-JPEG");
		} else {
			snprintf((char *)d->description, sizeof(d->description), "YUYV 4:2:2");
		}
		return 0;
	}
	case VIDIOC_ENUM_FRAMESIZES: {
		struct v4l2_frmsizeenum *fs = arg;
		memset(&fs->type, 0, sizeof(*fs) - offsetof(struct v4l2_frmsizeenum, type));
		for (int i = 0; i < p->nformats; i++)
			if (p->formats[i].fourcc == fs->pixel_format) {
				if (fs->index >= (uint32_t)p->formats[i].nframes)
					ERR(EINVAL);
				const struct fc_frame *fr = &p->formats[i].frames[fs->index];
				fs->type = V4L2_FRMSIZE_TYPE_DISCRETE;
				fs->discrete.width = fr->width;
				fs->discrete.height = fr->height;
				return 0;
			}
		ERR(EINVAL);
	}
	case VIDIOC_ENUM_FRAMEINTERVALS: {
		struct v4l2_frmivalenum *fi = arg;
		memset(&fi->type, 0, sizeof(*fi) - offsetof(struct v4l2_frmivalenum, type));
		for (int i = 0; i < p->nformats; i++) {
			if (p->formats[i].fourcc != fi->pixel_format)
				continue;
			for (int j = 0; j < p->formats[i].nframes; j++) {
				const struct fc_frame *fr = &p->formats[i].frames[j];
				if (fr->width != fi->width || fr->height != fi->height)
					continue;
				if (fi->index >= fr->nivals)
					ERR(EINVAL);
				uint32_t num = fr->ivals[fi->index], den = 10000000;
				simplify(&num, &den);
				fi->type = V4L2_FRMIVAL_TYPE_DISCRETE;
				fi->discrete.numerator = num;
				fi->discrete.denominator = den;
				return 0;
			}
			ERR(EINVAL);
		}
		ERR(EINVAL);
	}
	case VIDIOC_G_FMT: {
		struct v4l2_format *f = arg;
		if (check_type(f->type))
			return -1;
		get_format(c, f);
		return 0;
	}
	case VIDIOC_TRY_FMT: {
		struct v4l2_format *f = arg;
		if (check_type(f->type))
			return -1;
		sanitize_format(f);
		try_format(c, f, NULL, NULL);
		return 0;
	}
	case VIDIOC_S_FMT: {
		struct v4l2_format *f = arg;
		if (check_type(f->type))
			return -1;
		sanitize_format(f);
		if (prio_check(h) || acquire_for_setting(h))
			return -1;
		int fi, fri;
		try_format(c, f, &fi, &fri);
		if (held_queue(h) && held_queue(h)->nbufs)
			ERR(EBUSY); /* uvc_queue_allocated */
		fc_lock(c);
		sh->fmt_index = fi;
		sh->frame_index = fri;
		sh->interval = p->formats[fi].frames[fri].ivals[0];
		fc_unlock(c);
		return 0;
	}
	case VIDIOC_G_PARM: {
		struct v4l2_streamparm *sp = arg;
		if (check_type(sp->type))
			return -1;
		uint32_t num = sh->interval, den = 10000000;
		simplify(&num, &den);
		memset(sp, 0, sizeof(*sp));
		sp->type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
		sp->parm.capture.capability = V4L2_CAP_TIMEPERFRAME;
		sp->parm.capture.timeperframe.numerator = num;
		sp->parm.capture.timeperframe.denominator = den;
		return 0;
	}
	case VIDIOC_S_PARM: {
		struct v4l2_streamparm *sp = arg;
		if (check_type(sp->type))
			return -1;
		if (prio_check(h))
			return -1;
		memset(sp->parm.capture.reserved, 0, sizeof(sp->parm.capture.reserved));
		sp->parm.capture.extendedmode = 0;
		sp->parm.capture.capturemode &= V4L2_MODE_HIGHQUALITY;
		if (acquire_for_setting(h))
			return -1;
		if (held_queue(h) && held_queue(h)->streaming)
			ERR(EBUSY);
		uint32_t want = to_interval(sp->parm.capture.timeperframe.numerator,
					    sp->parm.capture.timeperframe.denominator);
		fc_lock(c);
		uint32_t got = nearest_interval(cur_frame(c), want);
		sh->interval = got;
		fc_unlock(c);
		uint32_t num = got, den = 10000000;
		simplify(&num, &den);
		sp->parm.capture.timeperframe.numerator = num;
		sp->parm.capture.timeperframe.denominator = den;
		sp->parm.capture.capability = V4L2_CAP_TIMEPERFRAME;
		return 0;
	}
	case VIDIOC_ENUMINPUT: {
		struct v4l2_input *in = arg;
		uint32_t index = in->index;
		if (index != 0)
			ERR(EINVAL);
		memset(in, 0, sizeof(*in));
		snprintf((char *)in->name, sizeof(in->name), "Camera 1");
		in->type = V4L2_INPUT_TYPE_CAMERA;
		return 0;
	}
	case VIDIOC_G_INPUT:
		*(int *)arg = 0;
		return 0;
	case VIDIOC_S_INPUT:
		if (prio_check(h) || acquire_for_setting(h))
			return -1;
		if (*(int *)arg != 0)
			ERR(EINVAL);
		return 0;
	case VIDIOC_G_PRIORITY:
		*(uint32_t *)arg = (uint32_t)prio_max(c);
		return 0;
	case VIDIOC_S_PRIORITY: {
		uint32_t np = *(uint32_t *)arg;
		if (prio_check(h))
			return -1;
		if (np != V4L2_PRIORITY_BACKGROUND && np != V4L2_PRIORITY_INTERACTIVE &&
		    np != V4L2_PRIORITY_RECORD)
			ERR(EINVAL);
		prio_count[c->index][h->prio]--;
		h->prio = (int)np;
		prio_count[c->index][h->prio]++;
		return 0;
	}
	case VIDIOC_QUERYCTRL: {
		struct v4l2_queryctrl *qc = arg;
		struct v4l2_query_ext_ctrl q;
		if (query_ctrl(c, qc->id, &q))
			return -1;
		memset(qc, 0, sizeof(*qc));
		qc->id = q.id;
		qc->type = q.type;
		snprintf((char *)qc->name, sizeof(qc->name), "%s", q.name);
		qc->minimum = (int32_t)q.minimum;
		qc->maximum = (int32_t)q.maximum;
		qc->step = (int32_t)q.step;
		qc->default_value = (int32_t)q.default_value;
		qc->flags = q.flags;
		return 0;
	}
	case VIDIOC_QUERY_EXT_CTRL: {
		struct v4l2_query_ext_ctrl *q = arg;
		return query_ctrl(c, q->id, q);
	}
	case VIDIOC_QUERYMENU: {
		struct v4l2_querymenu *qm = arg;
		uint32_t id = qm->id, index = qm->index;
		memset(qm, 0, sizeof(*qm));
		qm->id = id;
		qm->index = index;
		const struct fc_ctrl *k = fc_ctrl_find(p, id, NULL);
		if (index >= 32 || !k || k->type != V4L2_CTRL_TYPE_MENU ||
		    !(k->menu_mask & (1u << index)))
			ERR(EINVAL);
		snprintf((char *)qm->name, sizeof(qm->name), "%s", fc_menu_name(id, (int)index));
		return 0;
	}
	case VIDIOC_G_CTRL:
	case VIDIOC_S_CTRL: {
		/* v4l2-core turns these into one-control EXT_CTRLS calls */
		struct v4l2_control *ctl = arg;
		struct v4l2_ext_control x = {.id = ctl->id, .value = ctl->value};
		struct v4l2_ext_controls cs = {.which = V4L2_CTRL_ID2WHICH(ctl->id), .count = 1,
					       .controls = &x};
		int r;
		if (req == VIDIOC_G_CTRL) {
			r = g_ext_ctrls(h, &cs);
		} else {
			if (prio_check(h))
				return -1;
			r = s_ext_ctrls(h, &cs, VIDIOC_S_EXT_CTRLS);
		}
		if (!r)
			ctl->value = x.value;
		return r;
	}
	case VIDIOC_G_EXT_CTRLS:
		return g_ext_ctrls(h, arg);
	case VIDIOC_S_EXT_CTRLS:
		if (prio_check(h))
			return -1;
		return s_ext_ctrls(h, arg, VIDIOC_S_EXT_CTRLS);
	case VIDIOC_TRY_EXT_CTRLS:
		return s_ext_ctrls(h, arg, VIDIOC_TRY_EXT_CTRLS);
	case VIDIOC_SUBSCRIBE_EVENT: {
		struct v4l2_event_subscription *s = arg;
		int ci;
		if (s->type != V4L2_EVENT_CTRL)
			ERR(EINVAL);
		/* uvc_ctrl_add_event: a class is accepted and never sends anything */
		if ((s->id == V4L2_CID_USER_CLASS || s->id == V4L2_CID_CAMERA_CLASS) &&
		    has_class(c, s->id))
			return 0;
		if (!fc_ctrl_find(p, s->id, &ci))
			ERR(EINVAL);
		for (int i = 0; i < h->nsubs; i++)
			if (h->subs[i].id == s->id)
				return 0; /* already subscribed: nothing is sent again */
		struct fc_sub *sub = &h->subs[h->nsubs++];
		memset(sub, 0, sizeof(*sub));
		sub->id = s->id;
		sub->flags = s->flags;
		if (s->flags & V4L2_EVENT_SUB_FL_SEND_INITIAL) {
			struct v4l2_event ev;
			fill_ctrl_event(c, ci, V4L2_EVENT_CTRL_CH_FLAGS | V4L2_EVENT_CTRL_CH_VALUE,
					&ev);
			queue_event(h, sub, &ev);
		}
		return 0;
	}
	case VIDIOC_UNSUBSCRIBE_EVENT: {
		struct v4l2_event_subscription *s = arg;
		for (int i = 0; i < h->nsubs; i++)
			if (s->type == V4L2_EVENT_ALL || h->subs[i].id == s->id) {
				h->subs[i] = h->subs[--h->nsubs];
				i--;
			}
		return 0;
	}
	case VIDIOC_DQEVENT: {
		struct v4l2_event *ev = arg;
		int nonblock = (fcntl(h->fd, F_GETFL) & O_NONBLOCK) != 0;
		for (;;) {
			struct fc_sub *first = NULL;
			for (int i = 0; i < h->nsubs; i++)
				if (h->subs[i].pending && (!first || h->subs[i].order < first->order))
					first = &h->subs[i];
			if (first) {
				first->pending = 0;
				*ev = first->ev;
				ev->pending = (uint32_t)events_pending(h);
				return 0;
			}
			if (nonblock)
				ERR(ENOENT);
			if (dead(h))
				ERR(ENODEV);
			struct timespec ts = {0, 20000000};
			pthread_mutex_unlock(&lock);
			int r = nanosleep(&ts, NULL);
			pthread_mutex_lock(&lock);
			if (r && errno == EINTR)
				ERR(EINTR);
		}
	}
	case VIDIOC_G_SELECTION: {
		struct v4l2_selection *s = arg;
		if (check_type(s->type))
			return -1;
		if (s->target != V4L2_SEL_TGT_CROP_DEFAULT && s->target != V4L2_SEL_TGT_CROP_BOUNDS)
			ERR(EINVAL);
		s->r.left = 0;
		s->r.top = 0;
		s->r.width = cur_frame(c)->width;
		s->r.height = cur_frame(c)->height;
		return 0;
	}
	case VIDIOC_CROPCAP: {
		/* v4l2-core builds CROPCAP from G_SELECTION */
		struct v4l2_cropcap *cc = arg;
		if (check_type(cc->type))
			return -1;
		cc->pixelaspect.numerator = 1;
		cc->pixelaspect.denominator = 1;
		cc->bounds.left = cc->bounds.top = 0;
		cc->bounds.width = cur_frame(c)->width;
		cc->bounds.height = cur_frame(c)->height;
		cc->defrect = cc->bounds;
		return 0;
	}
	case VIDIOC_G_CROP:
		/* v4l2-core asks G_SELECTION for V4L2_SEL_TGT_CROP, which uvcvideo refuses */
		if (check_type(((struct v4l2_crop *)arg)->type))
			return -1;
		ERR(EINVAL);
	case VIDIOC_REQBUFS:
		return reqbufs(h, arg);
	case VIDIOC_CREATE_BUFS:
		return create_bufs(h, arg);
	case VIDIOC_QUERYBUF: {
		struct v4l2_buffer *v = arg;
		struct fc_queue *q = queue_of(h);
		if (!may_use_queue(h))
			ERR(EBUSY);
		if (check_type(v->type))
			return -1;
		if (v->index >= (uint32_t)q->nbufs)
			ERR(EINVAL);
		fill_buf(q, (int)v->index, v);
		return 0;
	}
	case VIDIOC_QBUF:
		return qbuf(h, arg);
	case VIDIOC_DQBUF:
		return dqbuf(h, arg);
	case VIDIOC_EXPBUF:
		return expbuf(h, arg);
	case VIDIOC_STREAMON:
		return streamon(h, arg);
	case VIDIOC_STREAMOFF:
		return streamoff(h, arg);
	default:
		/* standards, tuners, audio, overlay, read/write I/O, LOG_STATUS, PREPARE_BUF
		 * and the rest: uvcvideo has no handler, so v4l2-core answers ENOTTY */
		ERR(ENOTTY);
	}
}

int fc_handle_ioctl(struct fc_handle *h, unsigned long request, void *arg)
{
	/* video_ioctl2 refuses every ioctl once the device is unregistered */
	if (dead(h))
		ERR(ENODEV);
	if (!arg && request != VIDIOC_LOG_STATUS && (_IOC_DIR(request) != _IOC_NONE))
		ERR(EFAULT);
	pthread_mutex_lock(&lock);
	int r = do_ioctl(h, request, arg);
	int e = errno;
	pthread_mutex_unlock(&lock);
	if (r)
		fc_log("fakecam: ioctl 0x%08lx on video%d: %s", request, h->cam->sh->node,
		       strerror(e));
	errno = e;
	return r;
}

/* ---- open, close, poll, mmap ---- */

struct fc_handle *fc_handle_open(struct fc_cam *c, int fd, int flags)
{
	(void)flags;
	struct fc_handle *h = calloc(1, sizeof(*h));
	if (!h) {
		errno = ENOMEM;
		return NULL;
	}
	h->cam = c;
	h->fd = fd;
	h->generation = c->sh->generation;
	fc_lock(c);
	h->id = c->sh->next_handle++;
	fc_unlock(c);
	pthread_mutex_lock(&lock);
	h->prio = V4L2_PRIORITY_DEFAULT;
	prio_count[c->index][h->prio]++;
	h->link = all_handles;
	all_handles = h;
	pthread_mutex_unlock(&lock);
	return h;
}

void fc_handle_close(struct fc_handle *h)
{
	pthread_mutex_lock(&lock);
	struct fc_queue *q = queue_of(h);
	/* uvc_v4l2_release: the privileged handle frees the queue; mappings the application
	 * still holds stay valid (orphaned buffers) */
	if (q->holder == h) {
		q->streaming = 0;
		free_buffers(q);
		q->holder = NULL;
	}
	if (is_owner(h))
		dismiss(h);
	prio_count[h->cam->index][h->prio]--;
	for (struct fc_handle **pp = &all_handles; *pp; pp = &(*pp)->link)
		if (*pp == h) {
			*pp = h->link;
			break;
		}
	pthread_mutex_unlock(&lock);
	free(h);
}

short fc_handle_poll(struct fc_handle *h, short events, uint64_t *wake_ns)
{
	*wake_ns = 0;
	pthread_mutex_lock(&lock);
	short r = 0;
	if (dead(h)) {
		/* v4l2_poll on an unregistered device */
		r = POLLERR | POLLHUP | (events & POLLPRI);
	} else {
		struct fc_queue *q = queue_of(h);
		if (events & (POLLIN | POLLRDNORM)) {
			/* vb2_core_poll: nothing to wait for unless streaming */
			if (!q->streaming || !is_owner(h)) {
				r |= POLLERR;
			} else {
				advance(h->cam, q, fc_now_ns());
				if (q->ndone)
					r |= events & (POLLIN | POLLRDNORM);
				else
					*wake_ns = next_due(h->cam, q);
			}
		}
		if ((events & POLLPRI) && events_pending(h))
			r |= POLLPRI;
	}
	pthread_mutex_unlock(&lock);
	return r;
}

void *fc_handle_mmap(struct fc_handle *h, void *addr, size_t len, int prot, int flags, off_t off)
{
	pthread_mutex_lock(&lock);
	struct fc_queue *q = queue_of(h);
	void *ret = MAP_FAILED;
	int e = EINVAL;
	long page = sysconf(_SC_PAGESIZE);
	if (dead(h)) {
		e = ENODEV;
	} else if (q->memory == V4L2_MEMORY_MMAP && (flags & MAP_SHARED) && (prot & PROT_READ)) {
		/* vb2_mmap: the offset of one buffer, no longer than the buffer */
		for (int i = 0; i < q->nbufs; i++) {
			struct fc_buf *b = &q->bufs[i];
			size_t aligned = (b->size + page - 1) / page * page;
			if ((uint32_t)off != b->offset)
				continue;
			if (len > aligned)
				break;
			ret = fc_real.mmap(addr, len, prot, flags, b->memfd, 0);
			if (ret == MAP_FAILED) {
				e = errno;
				break;
			}
			for (int k = 0; k < 4; k++)
				if (!b->maps[k]) {
					b->maps[k] = ret;
					break;
				}
			break;
		}
	}
	pthread_mutex_unlock(&lock);
	if (ret == MAP_FAILED)
		errno = e;
	return ret;
}

/* munmap() of a buffer mapping: it is no longer V4L2_BUF_FLAG_MAPPED. */
void fc_note_munmap(void *addr)
{
	pthread_mutex_lock(&lock);
	for (int c = 0; c < FC_MAX_CAMS; c++)
		for (int i = 0; i < queues[c].nbufs; i++)
			for (int k = 0; k < 4; k++)
				if (queues[c].bufs[i].maps[k] == addr)
					queues[c].bufs[i].maps[k] = NULL;
	pthread_mutex_unlock(&lock);
}

int fc_handle_fstat_minor(struct fc_handle *h)
{
	return h->cam->sh->node;
}
