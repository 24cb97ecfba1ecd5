/*
 * fakecam: an emulated UVC camera for tests, loaded with LD_PRELOAD.
 *
 * Shared declarations. The library has four parts, one file each:
 *   shim.c     which libc calls are taken over, and for which paths and fds;
 *   v4l2.c     the V4L2 ioctls, as uvcvideo and v4l2-core answer them;
 *   profile.c  the cameras' data (formats, frame sizes, intervals, controls);
 *   state.c    the camera directory shared by all processes, and the faults;
 *   frames.c   what a frame contains (JPEG files, generated JPEG or YUYV, corruption).
 * The V4L2 structures and constants come from the system's <linux/videodev2.h>.
 */
#ifndef FAKECAM_H
#define FAKECAM_H

#include <linux/videodev2.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define FC_MAX_CTRLS 32
#define FC_MAX_MENU 8
#define FC_MAX_IVALS 8
#define FC_MAX_BUFFERS 32 /* UVC_MAX_VIDEO_BUFFERS */
#define FC_MAX_CAMS 16
#define FC_PATH 512

/* ---- profile.c: what a camera model is ---- */

struct fc_frame {
	uint16_t width, height;
	uint8_t nivals;
	uint32_t ivals[FC_MAX_IVALS]; /* frame intervals in 100 ns units, shortest first */
};

struct fc_format {
	uint32_t fourcc;
	int compressed;
	int nframes;
	const struct fc_frame *frames;
};

struct fc_ctrl {
	uint32_t id;
	const char *name;
	uint32_t type; /* V4L2_CTRL_TYPE_INTEGER, _BOOLEAN or _MENU */
	int32_t min, max, step, def;
	uint32_t menu_mask;  /* menus: which entries exist (bit n = entry n) */
	uint32_t master_id;  /* inactive unless this control has master_manual */
	int32_t master_manual;
};

struct fc_profile {
	const char *name;
	const char *card;    /* QUERYCAP card, the USB product string */
	const char *by_id;   /* udev's by-id prefix: usb-<vendor>_<model> */
	uint16_t usb_vendor, usb_product;
	int dead;            /* negotiates and streams, never completes a frame */
	int nformats;
	const struct fc_format *formats;
	int nctrls;
	const struct fc_ctrl *ctrls;
};

const struct fc_profile *fc_profile_find(const char *name);
const char *fc_profile_names(void);
const struct fc_ctrl *fc_ctrl_find(const struct fc_profile *p, uint32_t id, int *index);
const char *fc_menu_name(uint32_t id, int index);

/* ---- state.c: one camera, shared by every process through a mapped file ---- */

enum fc_fault { FC_FAULT_NONE, FC_FAULT_STALL, FC_FAULT_CORRUPT, FC_FAULT_NOSPACE };

#define FC_STATE_MAGIC 0x6663616dU /* "fcam" */
#define FC_STATE_VERSION 1

struct fc_shared {
	uint32_t magic, version;
	char profile[32];
	int32_t index;         /* camera number in the directory: cam0, cam1... */
	/* the USB side: changed only by fakecam-ctl */
	int32_t plugged;
	int32_t node;          /* N of /dev/videoN while plugged, the last N when unplugged */
	uint32_t generation;   /* +1 on every unplug and replug: fds of older generations are dead */
	int32_t fault;         /* enum fc_fault */
	/* the driver side: format, controls and who may stream */
	int32_t fmt_index, frame_index;
	uint32_t interval;     /* 100 ns units */
	int32_t ctrl[FC_MAX_CTRLS];
	int32_t owner_pid;     /* the privileged handle (uvc_acquire_privileges), 0 if none */
	uint64_t owner_handle;
	int32_t streaming;
	uint64_t frames_delivered, frames_corrupted;
	uint64_t next_handle;
};

struct fc_cam {
	char dir[FC_PATH];     /* the camera directory given by fakecam-run --dir */
	int index;
	int state_fd;
	struct fc_shared *sh;
	const struct fc_profile *profile;
};

/* Cameras of FAKECAM_DIR, opened once per process. */
int fc_dir_init(const char *dir);
const char *fc_dir(void);
struct fc_cam *fc_cam_by_node_path(const char *real_path);
struct fc_cam *fc_cam_by_minor(int minor);
struct fc_cam *fc_cam_get(int index);
int fc_cam_count(void);
void fc_lock(struct fc_cam *c);
void fc_unlock(struct fc_cam *c);
int fc_pid_alive(pid_t pid);
void fc_reset_driver_state(struct fc_cam *c);

/* ---- frames.c ---- */

struct fc_buffer_fill {
	uint8_t *dst;
	size_t cap;
	uint32_t fourcc;
	int width, height;
	uint64_t sequence;
	int fault;
};
/* Fills one frame; returns bytesused and sets *error for a frame uvcvideo flags V4L2_BUF_FLAG_ERROR. */
size_t fc_fill_frame(struct fc_cam *c, const struct fc_buffer_fill *f, int *error);
size_t fc_encode_jpeg(uint8_t *dst, size_t cap, int width, int height, uint64_t seq);
/* Rereads the JPEG files of the camera directory (at each STREAMON). */
void fc_frames_reload(struct fc_cam *c);

/* ---- v4l2.c: one open file of an emulated camera ---- */

struct fc_handle;
struct fc_handle *fc_handle_open(struct fc_cam *c, int fd, int flags);
void fc_handle_close(struct fc_handle *h);
int fc_handle_ioctl(struct fc_handle *h, unsigned long request, void *arg);
/* poll(): the revents the fd has now, and the monotonic ns when that may change (0: unknown). */
short fc_handle_poll(struct fc_handle *h, short events, uint64_t *wake_ns);
void *fc_handle_mmap(struct fc_handle *h, void *addr, size_t len, int prot, int flags, off_t off);
int fc_handle_fstat_minor(struct fc_handle *h);
void fc_note_munmap(void *addr);

uint64_t fc_now_ns(void);

/* ---- shim.c: the real libc functions, for the other files ---- */

struct fc_real {
	int (*open)(const char *, int, ...);
	int (*close)(int);
	int (*ioctl)(int, unsigned long, ...);
	void *(*mmap)(void *, size_t, int, int, int, off_t);
	int (*munmap)(void *, size_t);
	int (*poll)(void *, unsigned long, int);
	ssize_t (*read)(int, void *, size_t);
};
extern struct fc_real fc_real;
void fc_shim_init(void);
void fc_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
