/*
 * Which libc calls the emulation takes over, and for what.
 *
 * A camera node is a regular file in the camera directory (FAKECAM_DIR). Opening it opens that
 * file for real, so the fd is a real fd that close(), fcntl() and fork() handle as usual; this
 * file remembers which fds are cameras and answers ioctl(), mmap(), poll() and friends for
 * them. Every other fd and path goes straight to libc.
 *
 * Paths are mapped before libc sees them:
 *   /sys/dev/char/81:N/...        -> DIR/.fakecam/sys/81:N/...  (what v4l-utils read to decide
 *   /sys/class/video4linux/videoN -> the same                    that a path is a video node)
 * and with FAKECAM_DEV=1 (fakecam-run --dev), so that programs find the cameras where they
 * look on a real system:
 *   /dev/videoN                   -> DIR/videoN    (only numbers the emulation owns)
 *   /dev/v4l/by-id/...            -> DIR/by-id/...
 * and readdir() of /dev lists the plugged cameras' videoN.
 * stat() and friends show a camera node as the character device 81:N it stands for.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "fakecam.h"

#define API __attribute__((visibility("default")))

struct fc_real fc_real;

static struct {
	int (*openat)(int, const char *, int, ...);
	FILE *(*fopen)(const char *, const char *);
	FILE *(*fopen64)(const char *, const char *);
	int (*stat)(const char *, struct stat *);
	int (*lstat)(const char *, struct stat *);
	int (*fstat)(int, struct stat *);
	int (*fstatat)(int, const char *, struct stat *, int);
	int (*xstat)(int, const char *, struct stat *);
	int (*lxstat)(int, const char *, struct stat *);
	int (*fxstat)(int, int, struct stat *);
	int (*fxstatat)(int, int, const char *, struct stat *, int);
	int (*statx)(int, const char *, int, unsigned, struct statx *);
	int (*access)(const char *, int);
	int (*faccessat)(int, const char *, int, int);
	DIR *(*opendir)(const char *);
	struct dirent *(*readdir)(DIR *);
	struct dirent64 *(*readdir64)(DIR *);
	int (*closedir)(DIR *);
	ssize_t (*readlink)(const char *, char *, size_t);
	ssize_t (*readlinkat)(int, const char *, char *, size_t);
	char *(*realpath)(const char *, char *);
	ssize_t (*write)(int, const void *, size_t);
	int (*ppoll)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *);
	int (*select)(int, fd_set *, fd_set *, fd_set *, struct timeval *);
	int (*pselect)(int, fd_set *, fd_set *, fd_set *, const struct timespec *,
		       const sigset_t *);
	int (*epoll_ctl)(int, int, int, struct epoll_event *);
	int (*epoll_wait)(int, struct epoll_event *, int, int);
	int (*epoll_pwait)(int, struct epoll_event *, int, int, const sigset_t *);
} real;

static int active; /* FAKECAM_DIR names a camera directory */
static int dev_mode;
static int debug;
static pthread_once_t once = PTHREAD_ONCE_INIT;

void fc_log(const char *fmt, ...)
{
	if (!debug)
		return;
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n > (int)sizeof(buf) - 2)
		n = sizeof(buf) - 2;
	buf[n++] = '\n';
	if (real.write)
		real.write(2, buf, n);
}

#define RESOLVE(field, name) (*(void **)&(field) = dlsym(RTLD_NEXT, name))

/* Set while this thread initialises: calls the initialisation itself makes (realpath(),
 * open()...) come back here and must go straight to libc. */
static __thread int initialising;

static void init_body(void)
{
	RESOLVE(fc_real.open, "open");
	RESOLVE(fc_real.close, "close");
	RESOLVE(fc_real.ioctl, "ioctl");
	RESOLVE(fc_real.mmap, "mmap");
	RESOLVE(fc_real.munmap, "munmap");
	RESOLVE(fc_real.poll, "poll");
	RESOLVE(fc_real.read, "read");
	RESOLVE(real.openat, "openat");
	RESOLVE(real.fopen, "fopen");
	RESOLVE(real.fopen64, "fopen64");
	RESOLVE(real.stat, "stat");
	RESOLVE(real.lstat, "lstat");
	RESOLVE(real.fstat, "fstat");
	RESOLVE(real.fstatat, "fstatat");
	RESOLVE(real.xstat, "__xstat");
	RESOLVE(real.lxstat, "__lxstat");
	RESOLVE(real.fxstat, "__fxstat");
	RESOLVE(real.fxstatat, "__fxstatat");
	RESOLVE(real.statx, "statx");
	RESOLVE(real.access, "access");
	RESOLVE(real.faccessat, "faccessat");
	RESOLVE(real.opendir, "opendir");
	RESOLVE(real.readdir, "readdir");
	RESOLVE(real.readdir64, "readdir64");
	RESOLVE(real.closedir, "closedir");
	RESOLVE(real.readlink, "readlink");
	RESOLVE(real.readlinkat, "readlinkat");
	RESOLVE(real.realpath, "realpath");
	RESOLVE(real.write, "write");
	RESOLVE(real.ppoll, "ppoll");
	RESOLVE(real.select, "select");
	RESOLVE(real.pselect, "pselect");
	RESOLVE(real.epoll_ctl, "epoll_ctl");
	RESOLVE(real.epoll_wait, "epoll_wait");
	RESOLVE(real.epoll_pwait, "epoll_pwait");

	const char *d = getenv("FAKECAM_DEBUG");

	debug = d && *d && strcmp(d, "0");
	const char *dir = getenv("FAKECAM_DIR");
	if (!dir || !*dir)
		return;
	/* Only a process with the library preloaded emulates; fakecam.py loads it with ctypes
	 * for fakecam_create/fakecam_ctl, where the constructor must stay idle. */
	const char *pre = getenv("LD_PRELOAD");
	if (!pre || !strstr(pre, "fakecam"))
		return;
	if (fc_dir_init(dir)) {
		fc_log("fakecam: %s holds no emulated camera, emulation off", dir);
		return;
	}
	const char *dm = getenv("FAKECAM_DEV");
	dev_mode = dm && *dm && strcmp(dm, "0");
	active = 1;
	fc_log("fakecam: %d camera(s) in %s%s", fc_cam_count(), fc_dir(),
	       dev_mode ? ", also as /dev/video*" : "");
}

static void init_once(void)
{
	initialising = 1;
	init_body();
	initialising = 0;
}

void fc_shim_init(void)
{
	if (!initialising)
		pthread_once(&once, init_once);
}

__attribute__((constructor)) static void fakecam_ctor(void)
{
	fc_shim_init();
}

/* ---- which fds are cameras ---- */

#define MAX_FD 4096
static struct fc_handle *handles[MAX_FD];
static pthread_mutex_t handles_lock = PTHREAD_MUTEX_INITIALIZER;

static struct fc_handle *handle_of(int fd)
{
	if (!active || fd < 0 || fd >= MAX_FD)
		return NULL;
	return __atomic_load_n(&handles[fd], __ATOMIC_ACQUIRE);
}

/* ---- path mapping ---- */

static int exists(const char *path)
{
	struct stat st;
	return real.stat(path, &st) == 0;
}

static int node_owned(int n)
{
	for (int i = 0; i < fc_cam_count(); i++)
		if (fc_cam_get(i)->sh->node == n)
			return 1;
	return 0;
}

/* Returns path, or buf holding where path really is. *by_id tells readlink() to rewrite. */
static const char *map_path(const char *path, char *buf, size_t len, int *by_id)
{
	if (by_id)
		*by_id = 0;
	if (!active || !path || path[0] != '/')
		return path;
	const char *dir = fc_dir();
	int n, off = 0;
	if (!strncmp(path, "/sys/", 5)) {
		if (sscanf(path, "/sys/dev/char/81:%d%n", &n, &off) == 1 ||
		    sscanf(path, "/sys/class/video4linux/video%d%n", &n, &off) == 1) {
			if (path[off] && path[off] != '/')
				return path;
			snprintf(buf, len, "%s/.fakecam/sys/81:%d", dir, n);
			if (!exists(buf))
				return path;
			snprintf(buf, len, "%s/.fakecam/sys/81:%d%s", dir, n, path + off);
			return buf;
		}
		return path;
	}
	if (!dev_mode || strncmp(path, "/dev/", 5))
		return path;
	if (sscanf(path, "/dev/video%d%n", &n, &off) == 1 && !path[off] && n >= 0) {
		if (!node_owned(n))
			return path;
		snprintf(buf, len, "%s/video%d", dir, n);
		return buf;
	}
	if (!strncmp(path, "/dev/v4l/by-id", 14) && (!path[14] || path[14] == '/')) {
		snprintf(buf, len, "%s/by-id%s", dir, path + 14);
		if (by_id)
			*by_id = path[14] == '/';
		return buf;
	}
	if (!strcmp(path, "/dev/v4l") || !strcmp(path, "/dev/v4l/")) {
		snprintf(buf, len, "%s/.fakecam/v4l", dir);
		return buf;
	}
	return path;
}

/* A regular file in the camera directory that is a plugged camera's node: its minor, else -1. */
static int node_minor_of_stat(const struct stat *st)
{
	if (!active || !S_ISREG(st->st_mode) || st->st_size > 16)
		return -1;
	for (int i = 0; i < fc_cam_count(); i++) {
		struct fc_cam *c = fc_cam_get(i);
		if (!c->sh->plugged)
			continue;
		char p[FC_PATH + 32];
		struct stat ns;
		snprintf(p, sizeof(p), "%s/video%d", c->dir, c->sh->node);
		if (!real.stat(p, &ns) && ns.st_ino == st->st_ino && ns.st_dev == st->st_dev)
			return c->sh->node;
	}
	return -1;
}

static void as_char_device(struct stat *st, int minor)
{
	st->st_mode = S_IFCHR | (st->st_mode & 07777);
	st->st_rdev = makedev(81, minor);
	st->st_size = 0;
	st->st_blocks = 0;
	st->st_blksize = 4096;
}

static int fix_stat(int ret, struct stat *st)
{
	if (ret == 0 && active) {
		int minor = node_minor_of_stat(st);
		if (minor >= 0)
			as_char_device(st, minor);
	}
	return ret;
}

static int fix_fstat(int fd, int ret, struct stat *st)
{
	struct fc_handle *h = handle_of(fd);
	if (ret == 0 && h)
		as_char_device(st, fc_handle_fstat_minor(h));
	return ret;
}

/* ---- open ---- */

static int after_open(int fd, int flags)
{
	if (fd < 0 || !active)
		return fd;
	struct stat st;
	if (real.fstat(fd, &st))
		return fd;
	int minor = node_minor_of_stat(&st);
	if (minor < 0)
		return fd;
	struct fc_cam *c = fc_cam_by_minor(minor);
	if (!c)
		return fd;
	if (fd >= MAX_FD) {
		fc_real.close(fd);
		errno = EMFILE;
		return -1;
	}
	struct fc_handle *h = fc_handle_open(c, fd, flags);
	if (!h) {
		int e = errno;
		fc_real.close(fd);
		errno = e;
		return -1;
	}
	pthread_mutex_lock(&handles_lock);
	__atomic_store_n(&handles[fd], h, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&handles_lock);
	fc_log("fakecam: open video%d -> fd %d", minor, fd);
	return fd;
}

static int do_openat(int dirfd, const char *path, int flags, mode_t mode)
{
	fc_shim_init();
	char buf[PATH_MAX];
	const char *p = map_path(path, buf, sizeof(buf), NULL);
	return after_open(real.openat(dirfd, p, flags, mode), flags);
}

#define MODE_ARG(flags)                                    \
	mode_t mode = 0;                                   \
	if ((flags) & (O_CREAT | O_TMPFILE)) {             \
		va_list ap;                                \
		va_start(ap, flags);                       \
		mode = va_arg(ap, mode_t);                 \
		va_end(ap);                                \
	}

API int open(const char *path, int flags, ...)
{
	MODE_ARG(flags);
	return do_openat(AT_FDCWD, path, flags, mode);
}

API int open64(const char *path, int flags, ...)
{
	MODE_ARG(flags);
	return do_openat(AT_FDCWD, path, flags | O_LARGEFILE, mode);
}

API int openat(int dirfd, const char *path, int flags, ...)
{
	MODE_ARG(flags);
	return do_openat(dirfd, path, flags, mode);
}

API int openat64(int dirfd, const char *path, int flags, ...)
{
	MODE_ARG(flags);
	return do_openat(dirfd, path, flags | O_LARGEFILE, mode);
}

/* _FORTIFY_SOURCE builds call these. */
API int __open_2(const char *path, int flags)
{
	return do_openat(AT_FDCWD, path, flags, 0);
}

API int __open64_2(const char *path, int flags)
{
	return do_openat(AT_FDCWD, path, flags | O_LARGEFILE, 0);
}

API int __openat_2(int dirfd, const char *path, int flags)
{
	return do_openat(dirfd, path, flags, 0);
}

API int __openat64_2(int dirfd, const char *path, int flags)
{
	return do_openat(dirfd, path, flags | O_LARGEFILE, 0);
}

/* std::ifstream and fopen() open through libc's internal open: map their paths here. */
API FILE *fopen(const char *path, const char *mode)
{
	fc_shim_init();
	char buf[PATH_MAX];
	return real.fopen(map_path(path, buf, sizeof(buf), NULL), mode);
}

API FILE *fopen64(const char *path, const char *mode)
{
	fc_shim_init();
	char buf[PATH_MAX];
	return real.fopen64(map_path(path, buf, sizeof(buf), NULL), mode);
}

API int close(int fd)
{
	fc_shim_init();
	struct fc_handle *h = handle_of(fd);
	if (h) {
		pthread_mutex_lock(&handles_lock);
		__atomic_store_n(&handles[fd], NULL, __ATOMIC_RELEASE);
		pthread_mutex_unlock(&handles_lock);
		fc_handle_close(h);
		fc_log("fakecam: close fd %d", fd);
	}
	return fc_real.close(fd);
}

/* V4L2 nodes without read()/write() I/O answer EINVAL (uvcvideo has no read method). */
API ssize_t read(int fd, void *buf, size_t n)
{
	fc_shim_init();
	if (handle_of(fd)) {
		errno = EINVAL;
		return -1;
	}
	return fc_real.read(fd, buf, n);
}

API ssize_t write(int fd, const void *buf, size_t n)
{
	fc_shim_init();
	if (handle_of(fd)) {
		errno = EINVAL;
		return -1;
	}
	return real.write(fd, buf, n);
}

/* ---- stat and friends ---- */

#define PATH_STAT(call, path, st)                                      \
	do {                                                           \
		fc_shim_init();                                        \
		char buf_[PATH_MAX];                                   \
		const char *p_ = map_path(path, buf_, sizeof(buf_), NULL); \
		return fix_stat(call, st);                             \
	} while (0)

API int stat(const char *path, struct stat *st)
{
	PATH_STAT(real.stat(p_, st), path, st);
}

API int lstat(const char *path, struct stat *st)
{
	PATH_STAT(real.lstat(p_, st), path, st);
}

API int fstatat(int dirfd, const char *path, struct stat *st, int flags)
{
	fc_shim_init();
	if ((flags & AT_EMPTY_PATH) && path && !*path)
		return fix_fstat(dirfd, real.fstatat(dirfd, path, st, flags), st);
	PATH_STAT(real.fstatat(dirfd, p_, st, flags), path, st);
}

API int fstat(int fd, struct stat *st)
{
	fc_shim_init();
	return fix_fstat(fd, real.fstat(fd, st), st);
}

/* struct stat and struct stat64 are one layout on 64-bit systems. */
API int stat64(const char *path, struct stat64 *st)
{
	return stat(path, (struct stat *)st);
}

API int lstat64(const char *path, struct stat64 *st)
{
	return lstat(path, (struct stat *)st);
}

API int fstat64(int fd, struct stat64 *st)
{
	return fstat(fd, (struct stat *)st);
}

API int fstatat64(int dirfd, const char *path, struct stat64 *st, int flags)
{
	return fstatat(dirfd, path, (struct stat *)st, flags);
}

/* Programs built against glibc < 2.33 call the __xstat family. */
/* Newer ports (arm64...) have no __xstat family: nothing there calls these. */
#define NEED(fn)                        \
	do {                            \
		fc_shim_init();         \
		if (!(fn)) {            \
			errno = ENOSYS; \
			return -1;      \
		}                       \
	} while (0)

API int __xstat(int ver, const char *path, struct stat *st)
{
	NEED(real.xstat);
	PATH_STAT(real.xstat(ver, p_, st), path, st);
}

API int __lxstat(int ver, const char *path, struct stat *st)
{
	NEED(real.lxstat);
	PATH_STAT(real.lxstat(ver, p_, st), path, st);
}

API int __fxstat(int ver, int fd, struct stat *st)
{
	NEED(real.fxstat);
	return fix_fstat(fd, real.fxstat(ver, fd, st), st);
}

API int __fxstatat(int ver, int dirfd, const char *path, struct stat *st, int flags)
{
	NEED(real.fxstatat);
	PATH_STAT(real.fxstatat(ver, dirfd, p_, st, flags), path, st);
}

API int __xstat64(int ver, const char *path, struct stat64 *st)
{
	return __xstat(ver, path, (struct stat *)st);
}

API int __lxstat64(int ver, const char *path, struct stat64 *st)
{
	return __lxstat(ver, path, (struct stat *)st);
}

API int __fxstat64(int ver, int fd, struct stat64 *st)
{
	return __fxstat(ver, fd, (struct stat *)st);
}

API int __fxstatat64(int ver, int dirfd, const char *path, struct stat64 *st, int flags)
{
	return __fxstatat(ver, dirfd, path, (struct stat *)st, flags);
}

API int statx(int dirfd, const char *path, int flags, unsigned mask, struct statx *sx)
{
	fc_shim_init();
	char buf[PATH_MAX];
	const char *p = map_path(path, buf, sizeof(buf), NULL);
	int ret = real.statx(dirfd, p, flags, mask, sx);
	if (ret || !active)
		return ret;
	int minor = -1;
	if ((flags & AT_EMPTY_PATH) && path && !*path) {
		struct fc_handle *h = handle_of(dirfd);
		if (h)
			minor = fc_handle_fstat_minor(h);
	} else {
		struct stat st = {0};
		st.st_mode = sx->stx_mode;
		st.st_size = sx->stx_size;
		st.st_ino = sx->stx_ino;
		st.st_dev = makedev(sx->stx_dev_major, sx->stx_dev_minor);
		minor = node_minor_of_stat(&st);
	}
	if (minor >= 0) {
		sx->stx_mode = S_IFCHR | (sx->stx_mode & 07777);
		sx->stx_rdev_major = 81;
		sx->stx_rdev_minor = minor;
		sx->stx_size = 0;
		sx->stx_blocks = 0;
	}
	return ret;
}

API int access(const char *path, int mode)
{
	fc_shim_init();
	char buf[PATH_MAX];
	return real.access(map_path(path, buf, sizeof(buf), NULL), mode);
}

API int faccessat(int dirfd, const char *path, int mode, int flags)
{
	fc_shim_init();
	char buf[PATH_MAX];
	return real.faccessat(dirfd, map_path(path, buf, sizeof(buf), NULL), mode, flags);
}

/* /dev/v4l/by-id/X -> "../videoN" in the camera directory; udev's link is "../../videoN". */
static ssize_t fix_link(ssize_t n, char *out, size_t len, int by_id)
{
	if (n <= 0 || !by_id || (size_t)n >= len || strncmp(out, "../video", 8))
		return n;
	if ((size_t)n + 3 > len)
		return n;
	memmove(out + 3, out, n);
	memcpy(out, "../", 3);
	return n + 3;
}

API ssize_t readlink(const char *path, char *out, size_t len)
{
	fc_shim_init();
	char buf[PATH_MAX];
	int by_id;
	const char *p = map_path(path, buf, sizeof(buf), &by_id);
	return fix_link(real.readlink(p, out, len), out, len, by_id);
}

API ssize_t readlinkat(int dirfd, const char *path, char *out, size_t len)
{
	fc_shim_init();
	char buf[PATH_MAX];
	int by_id;
	const char *p = map_path(path, buf, sizeof(buf), &by_id);
	return fix_link(real.readlinkat(dirfd, p, out, len), out, len, by_id);
}

/* realpath(3) walks the path inside libc: resolve the mapped path, then name it as /dev does. */
API char *realpath(const char *path, char *resolved)
{
	fc_shim_init();
	char buf[PATH_MAX];
	const char *p = map_path(path, buf, sizeof(buf), NULL);
	if (p == path || !dev_mode)
		return real.realpath(p, resolved);
	char tmp[PATH_MAX];
	if (!real.realpath(p, tmp))
		return NULL;
	const char *dir = fc_dir();
	size_t n = strlen(dir);
	char out[PATH_MAX];
	if (!strncmp(tmp, dir, n) && !strncmp(tmp + n, "/video", 6))
		snprintf(out, sizeof(out), "/dev%s", tmp + n);
	else if (!strncmp(tmp, dir, n) && !strncmp(tmp + n, "/by-id", 6))
		snprintf(out, sizeof(out), "/dev/v4l%s", tmp + n);
	else
		snprintf(out, sizeof(out), "%s", tmp);
	if (resolved) {
		strcpy(resolved, out);
		return resolved;
	}
	return strdup(out);
}

/* ---- directories: /dev lists the plugged cameras ---- */

struct dev_listing {
	DIR *dir;
	int next_cam;   /* the next camera to append once the real entries are done */
	int v4l_done;
	struct dirent ent;
	struct dirent64 ent64;
	struct dev_listing *link;
};
static struct dev_listing *listings;
static pthread_mutex_t listings_lock = PTHREAD_MUTEX_INITIALIZER;

API DIR *opendir(const char *path)
{
	fc_shim_init();
	char buf[PATH_MAX];
	DIR *d = real.opendir(map_path(path, buf, sizeof(buf), NULL));
	if (d && active && dev_mode && path && (!strcmp(path, "/dev") || !strcmp(path, "/dev/"))) {
		struct dev_listing *l = calloc(1, sizeof(*l));
		if (l) {
			l->dir = d;
			pthread_mutex_lock(&listings_lock);
			l->link = listings;
			listings = l;
			pthread_mutex_unlock(&listings_lock);
		}
	}
	return d;
}

static struct dev_listing *listing_of(DIR *d)
{
	struct dev_listing *l;
	pthread_mutex_lock(&listings_lock);
	for (l = listings; l && l->dir != d; l = l->link)
		;
	pthread_mutex_unlock(&listings_lock);
	return l;
}

/* The next name to add after the real entries of /dev, or NULL at the end. */
static const char *next_extra(struct dev_listing *l, char *name, size_t len, unsigned char *type)
{
	char p[64];
	while (l->next_cam < fc_cam_count()) {
		struct fc_cam *c = fc_cam_get(l->next_cam++);
		if (!c->sh->plugged)
			continue;
		snprintf(name, len, "video%d", c->sh->node);
		snprintf(p, sizeof(p), "/dev/%s", name);
		if (real.access(p, F_OK) == 0)
			continue; /* a real node of that name is listed already */
		*type = DT_CHR;
		return name;
	}
	if (!l->v4l_done) {
		l->v4l_done = 1;
		if (real.access("/dev/v4l", F_OK) != 0) {
			snprintf(name, len, "v4l");
			*type = DT_DIR;
			return name;
		}
	}
	return NULL;
}

API struct dirent *readdir(DIR *d)
{
	fc_shim_init();
	struct dirent *e = real.readdir(d);
	struct dev_listing *l;
	if (e || !active || !(l = listing_of(d)))
		return e;
	unsigned char type;
	if (!next_extra(l, l->ent.d_name, sizeof(l->ent.d_name), &type))
		return NULL;
	l->ent.d_ino = 1;
	l->ent.d_type = type;
	l->ent.d_reclen = sizeof(l->ent);
	return &l->ent;
}

API struct dirent64 *readdir64(DIR *d)
{
	fc_shim_init();
	struct dirent64 *e = real.readdir64(d);
	struct dev_listing *l;
	if (e || !active || !(l = listing_of(d)))
		return e;
	unsigned char type;
	if (!next_extra(l, l->ent64.d_name, sizeof(l->ent64.d_name), &type))
		return NULL;
	l->ent64.d_ino = 1;
	l->ent64.d_type = type;
	l->ent64.d_reclen = sizeof(l->ent64);
	return &l->ent64;
}

API int closedir(DIR *d)
{
	fc_shim_init();
	pthread_mutex_lock(&listings_lock);
	for (struct dev_listing **pp = &listings; *pp; pp = &(*pp)->link)
		if ((*pp)->dir == d) {
			struct dev_listing *l = *pp;
			*pp = l->link;
			free(l);
			break;
		}
	pthread_mutex_unlock(&listings_lock);
	return real.closedir(d);
}

/* ---- ioctl, mmap ---- */

API int ioctl(int fd, unsigned long request, ...)
{
	va_list ap;
	va_start(ap, request);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	fc_shim_init();
	struct fc_handle *h = handle_of(fd);
	if (h)
		return fc_handle_ioctl(h, request, arg);
	return fc_real.ioctl(fd, request, arg);
}

API void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	fc_shim_init();
	struct fc_handle *h = handle_of(fd);
	if (h)
		return fc_handle_mmap(h, addr, len, prot, flags, off);
	return fc_real.mmap(addr, len, prot, flags, fd, off);
}

API int munmap(void *addr, size_t len)
{
	fc_shim_init();
	if (active)
		fc_note_munmap(addr);
	return fc_real.munmap(addr, len);
}

API void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off64_t off)
{
	return mmap(addr, len, prot, flags, fd, (off_t)off);
}

/* ---- waiting: poll, select, epoll ---- */

uint64_t fc_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Faults come from other processes: look at the camera at least this often while waiting. */
#define SLICE_NS 20000000ULL

static int any_camera(const struct pollfd *fds, nfds_t n)
{
	for (nfds_t i = 0; i < n; i++)
		if (handle_of(fds[i].fd))
			return 1;
	return 0;
}

/* poll() over a mix of real fds and cameras: cameras are asked directly, real fds by libc,
 * in slices so that a frame falling due or a fault from outside ends the wait. */
static int mixed_poll(struct pollfd *fds, nfds_t n, int64_t timeout_ns, const sigset_t *mask)
{
	uint64_t deadline = timeout_ns < 0 ? UINT64_MAX : fc_now_ns() + (uint64_t)timeout_ns;
	struct pollfd stack[64];
	short stack_cam[64];
	struct pollfd *tmp = n <= 64 ? stack : malloc(n * sizeof(*tmp));
	short *cam = n <= 64 ? stack_cam : malloc(n * sizeof(*cam));
	int ret = -1;
	if (!tmp || !cam) {
		errno = ENOMEM;
		goto out;
	}
	for (;;) {
		int ready = 0;
		uint64_t now = fc_now_ns(), wake = UINT64_MAX;
		for (nfds_t i = 0; i < n; i++) {
			tmp[i] = fds[i];
			cam[i] = 0;
			struct fc_handle *h = handle_of(fds[i].fd);
			if (!h)
				continue;
			uint64_t w = 0;
			cam[i] = fc_handle_poll(h, fds[i].events, &w);
			tmp[i].fd = -1; /* libc poll() skips negative fds */
			if (cam[i])
				ready++;
			if (w && w < wake)
				wake = w;
		}
		uint64_t until = deadline;
		if (wake < until)
			until = wake;
		if (now + SLICE_NS < until)
			until = now + SLICE_NS;
		struct timespec ts = {0, 0};
		if (!ready && until > now) {
			uint64_t d = until - now;
			ts.tv_sec = (time_t)(d / 1000000000ULL);
			ts.tv_nsec = (long)(d % 1000000000ULL);
		}
		if (real.ppoll(tmp, n, &ts, mask) < 0)
			break;
		int total = 0;
		for (nfds_t i = 0; i < n; i++) {
			fds[i].revents = handle_of(fds[i].fd) ? cam[i] : tmp[i].revents;
			if (fds[i].revents)
				total++;
		}
		if (total || fc_now_ns() >= deadline) {
			ret = total;
			break;
		}
	}
out:
	if (tmp != stack)
		free(tmp);
	if (cam != stack_cam)
		free(cam);
	return ret;
}

API int poll(struct pollfd *fds, nfds_t n, int timeout)
{
	fc_shim_init();
	if (!active || !any_camera(fds, n))
		return fc_real.poll(fds, n, timeout);
	return mixed_poll(fds, n, timeout < 0 ? -1 : (int64_t)timeout * 1000000, NULL);
}

API int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t fdslen)
{
	(void)fdslen;
	return poll(fds, n, timeout);
}

API int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *mask)
{
	fc_shim_init();
	if (!active || !any_camera(fds, n))
		return real.ppoll(fds, n, ts, mask);
	int64_t t = ts ? (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec : -1;
	return mixed_poll(fds, n, t, mask);
}

static int select_common(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, int64_t timeout_ns,
			 const sigset_t *mask, int *handled)
{
	*handled = 0;
	if (!active || nfds <= 0)
		return 0;
	int cams = 0, count = 0;
	for (int fd = 0; fd < nfds && fd < FD_SETSIZE; fd++) {
		int in = (rd && FD_ISSET(fd, rd)) || (wr && FD_ISSET(fd, wr)) ||
			 (ex && FD_ISSET(fd, ex));
		if (!in)
			continue;
		count++;
		if (handle_of(fd))
			cams++;
	}
	if (!cams)
		return 0;
	*handled = 1;
	struct pollfd *fds = calloc(count, sizeof(*fds));
	if (!fds) {
		errno = ENOMEM;
		return -1;
	}
	int k = 0;
	for (int fd = 0; fd < nfds && fd < FD_SETSIZE; fd++) {
		short ev = 0;
		if (rd && FD_ISSET(fd, rd))
			ev |= POLLIN;
		if (wr && FD_ISSET(fd, wr))
			ev |= POLLOUT;
		if (ex && FD_ISSET(fd, ex))
			ev |= POLLPRI;
		if (ev) {
			fds[k].fd = fd;
			fds[k].events = ev;
			k++;
		}
	}
	int r = mixed_poll(fds, count, timeout_ns, mask);
	if (r < 0) {
		free(fds);
		return -1;
	}
	/* The kernel's select(): readable on IN/HUP/ERR, writable on OUT/ERR, exception on PRI. */
	int bits = 0;
	for (int i = 0; i < count; i++) {
		int fd = fds[i].fd;
		short re = fds[i].revents;
		if (rd && FD_ISSET(fd, rd)) {
			if (re & (POLLIN | POLLRDNORM | POLLHUP | POLLERR))
				bits++;
			else
				FD_CLR(fd, rd);
		}
		if (wr && FD_ISSET(fd, wr)) {
			if (re & (POLLOUT | POLLWRNORM | POLLERR))
				bits++;
			else
				FD_CLR(fd, wr);
		}
		if (ex && FD_ISSET(fd, ex)) {
			if (re & POLLPRI)
				bits++;
			else
				FD_CLR(fd, ex);
		}
	}
	free(fds);
	return bits;
}

API int select(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, struct timeval *tv)
{
	fc_shim_init();
	int handled;
	uint64_t start = fc_now_ns();
	int64_t t = tv ? (int64_t)tv->tv_sec * 1000000000 + (int64_t)tv->tv_usec * 1000 : -1;
	int r = select_common(nfds, rd, wr, ex, t, NULL, &handled);
	if (!handled)
		return real.select(nfds, rd, wr, ex, tv);
	if (tv) {
		/* Linux select() leaves the time not slept in *tv. */
		int64_t left = t - (int64_t)(fc_now_ns() - start);
		if (left < 0)
			left = 0;
		tv->tv_sec = left / 1000000000;
		tv->tv_usec = (left % 1000000000) / 1000;
	}
	return r;
}

API int pselect(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, const struct timespec *ts,
		const sigset_t *mask)
{
	fc_shim_init();
	int handled;
	int64_t t = ts ? (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec : -1;
	int r = select_common(nfds, rd, wr, ex, t, mask, &handled);
	if (!handled)
		return real.pselect(nfds, rd, wr, ex, ts, mask);
	return r;
}

/* epoll refuses regular files (EPERM): camera fds are watched here instead. */
struct ep_watch {
	int epfd, fd;
	struct epoll_event ev;
	struct ep_watch *link;
};
static struct ep_watch *watches;
static pthread_mutex_t watches_lock = PTHREAD_MUTEX_INITIALIZER;

API int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
	fc_shim_init();
	if (!handle_of(fd))
		return real.epoll_ctl(epfd, op, fd, ev);
	pthread_mutex_lock(&watches_lock);
	struct ep_watch **pp = &watches;
	while (*pp && !((*pp)->epfd == epfd && (*pp)->fd == fd))
		pp = &(*pp)->link;
	int ret = 0;
	if (op == EPOLL_CTL_ADD) {
		if (*pp) {
			errno = EEXIST;
			ret = -1;
		} else if (!ev) {
			errno = EFAULT;
			ret = -1;
		} else {
			struct ep_watch *w = calloc(1, sizeof(*w));
			if (!w) {
				errno = ENOMEM;
				ret = -1;
			} else {
				w->epfd = epfd;
				w->fd = fd;
				w->ev = *ev;
				w->link = watches;
				watches = w;
			}
		}
	} else if (op == EPOLL_CTL_MOD || op == EPOLL_CTL_DEL) {
		if (!*pp) {
			errno = ENOENT;
			ret = -1;
		} else if (op == EPOLL_CTL_DEL) {
			struct ep_watch *w = *pp;
			*pp = w->link;
			free(w);
		} else if (!ev) {
			errno = EFAULT;
			ret = -1;
		} else {
			(*pp)->ev = *ev;
		}
	} else {
		errno = EINVAL;
		ret = -1;
	}
	pthread_mutex_unlock(&watches_lock);
	return ret;
}

static int ep_wait(int epfd, struct epoll_event *out, int max, int timeout, const sigset_t *mask)
{
	uint64_t deadline = timeout < 0 ? UINT64_MAX : fc_now_ns() + (uint64_t)timeout * 1000000;
	for (;;) {
		int n = 0;
		uint64_t now = fc_now_ns(), wake = UINT64_MAX;
		int watched = 0;
		pthread_mutex_lock(&watches_lock);
		for (struct ep_watch *w = watches; w; w = w->link) {
			if (w->epfd != epfd)
				continue;
			struct fc_handle *h = handle_of(w->fd);
			if (!h)
				continue; /* closed: the kernel forgets it too */
			watched = 1;
			uint64_t wk = 0;
			short ev = 0;
			if (w->ev.events & EPOLLIN)
				ev |= POLLIN;
			if (w->ev.events & EPOLLOUT)
				ev |= POLLOUT;
			if (w->ev.events & EPOLLPRI)
				ev |= POLLPRI;
			short r = fc_handle_poll(h, ev, &wk);
			if (wk && wk < wake)
				wake = wk;
			if (r && n < max) {
				out[n].events = (r & POLLIN ? EPOLLIN : 0) | (r & POLLOUT ? EPOLLOUT : 0) |
						(r & POLLPRI ? EPOLLPRI : 0) | (r & POLLERR ? EPOLLERR : 0) |
						(r & POLLHUP ? EPOLLHUP : 0) |
						(r & POLLRDNORM ? EPOLLRDNORM : 0);
				out[n].data = w->ev.data;
				n++;
			}
		}
		pthread_mutex_unlock(&watches_lock);
		if (!watched && !n)
			return real.epoll_pwait(epfd, out, max,
						timeout < 0 ? -1
							    : (int)((deadline > now ? deadline - now : 0) /
								    1000000),
						mask);
		int t = 0;
		if (!n) {
			uint64_t until = deadline < wake ? deadline : wake;
			if (now + SLICE_NS < until)
				until = now + SLICE_NS;
			t = until > now ? (int)((until - now + 999999) / 1000000) : 0;
		}
		int r = real.epoll_pwait(epfd, out + n, max - n, t, mask);
		if (r < 0)
			return n ? n : -1;
		if (n + r || fc_now_ns() >= deadline)
			return n + r;
	}
}

API int epoll_wait(int epfd, struct epoll_event *out, int max, int timeout)
{
	fc_shim_init();
	if (!active)
		return real.epoll_wait(epfd, out, max, timeout);
	return ep_wait(epfd, out, max, timeout, NULL);
}

API int epoll_pwait(int epfd, struct epoll_event *out, int max, int timeout, const sigset_t *m)
{
	fc_shim_init();
	if (!active)
		return real.epoll_pwait(epfd, out, max, timeout, m);
	return ep_wait(epfd, out, max, timeout, m);
}
