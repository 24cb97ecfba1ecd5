/*
 * The camera directory: what separate processes share, as they share a real camera.
 *
 *   DIR/videoN                  the device node while the camera is plugged (a regular file
 *                               holding "camK"; the library makes it look like a char device)
 *   DIR/by-id/usb-...-index0    udev's by-id link, "../videoN"; keeps its name across replugs
 *   DIR/.fakecam/camK.state     struct fc_shared, mapped by every process using the camera
 *   DIR/.fakecam/sys/81:N/      what sysfs shows for the node (uevent, name, index, dev)
 *   DIR/.fakecam/frames         the directory of JPEG files to stream, if any
 *
 * Faults (fakecam-ctl) change the files and the mapped state; running processes notice on
 * their next call, as a driver notices a disconnect. The functions named fakecam_* are the
 * interface for fakecam.py (through ctypes): they work without LD_PRELOAD.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fakecam.h"

#define API __attribute__((visibility("default")))

static struct fc_cam cams[FC_MAX_CAMS];
static int ncams;
static char dir_path[FC_PATH];
/* flock() does not exclude threads sharing one open file description: a mutex does. */
static pthread_mutex_t proc_lock = PTHREAD_MUTEX_INITIALIZER;

static int err_out(char *err, size_t len, const char *fmt, ...)
{
	if (err && len) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, len, fmt, ap);
		va_end(ap);
	}
	return -1;
}

void fc_lock(struct fc_cam *c)
{
	pthread_mutex_lock(&proc_lock);
	while (flock(c->state_fd, LOCK_EX) < 0 && errno == EINTR)
		;
}

void fc_unlock(struct fc_cam *c)
{
	flock(c->state_fd, LOCK_UN);
	pthread_mutex_unlock(&proc_lock);
}

int fc_pid_alive(pid_t pid)
{
	return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

static int write_file(const char *path, const char *text)
{
	int fd = fc_real.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	fchmod(fd, 0644); /* whatever the umask: other users read sysfs */
	size_t len = strlen(text);
	int ok = write(fd, text, len) == (ssize_t)len;
	fc_real.close(fd);
	return ok ? 0 : -1;
}

static void rm_tree(const char *path)
{
	DIR *d = opendir(path);
	if (d) {
		struct dirent *e;
		while ((e = readdir(d))) {
			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
				continue;
			char sub[FC_PATH * 2];
			snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
			struct stat st;
			if (!lstat(sub, &st) && S_ISDIR(st.st_mode))
				rm_tree(sub);
			else
				unlink(sub);
		}
		closedir(d);
	}
	rmdir(path);
}

/* Controls, format and ownership as a freshly enumerated device has them. */
void fc_reset_driver_state(struct fc_cam *c)
{
	struct fc_shared *sh = c->sh;
	const struct fc_profile *p = c->profile;
	for (int i = 0; i < p->nctrls; i++)
		sh->ctrl[i] = p->ctrls[i].def;
	/* uvcvideo's default: the first format and its first frame, at that frame's default
	 * (first) interval. */
	sh->fmt_index = 0;
	sh->frame_index = 0;
	sh->interval = p->formats[0].frames[0].ivals[0];
	sh->owner_pid = 0;
	sh->owner_handle = 0;
	sh->streaming = 0;
}

static void by_id_name(const struct fc_cam *c, char *out, size_t len)
{
	snprintf(out, len, "%s_FAKE%04d-video-index0", c->profile->by_id, c->index);
}

/* What udev and sysfs show while the camera is plugged in as videoN. */
static int make_node(struct fc_cam *c, char *err, size_t errlen)
{
	char path[FC_PATH * 2], text[256], link[FC_PATH * 2], name[200];
	int n = c->sh->node;

	snprintf(path, sizeof(path), "%s/.fakecam/sys/81:%d", c->dir, n);
	mkdir(path, 0755);
	snprintf(link, sizeof(link), "%s/device", path);
	mkdir(link, 0755);
	snprintf(link, sizeof(link), "%s/uevent", path);
	snprintf(text, sizeof(text), "MAJOR=81\nMINOR=%d\nDEVNAME=video%d\n", n, n);
	if (write_file(link, text))
		return err_out(err, errlen, "cannot write %s: %s", link, strerror(errno));
	snprintf(link, sizeof(link), "%s/name", path);
	snprintf(text, sizeof(text), "%s\n", c->profile->card);
	write_file(link, text);
	snprintf(link, sizeof(link), "%s/index", path);
	write_file(link, "0\n");
	snprintf(link, sizeof(link), "%s/dev", path);
	snprintf(text, sizeof(text), "81:%d\n", n);
	write_file(link, text);

	snprintf(path, sizeof(path), "%s/video%d", c->dir, n);
	snprintf(text, sizeof(text), "cam%d\n", c->index);
	if (write_file(path, text))
		return err_out(err, errlen, "cannot create %s: %s", path, strerror(errno));
	chmod(path, 0666); /* real nodes are 0660 root:video; tests need no group */

	by_id_name(c, name, sizeof(name));
	snprintf(link, sizeof(link), "%s/by-id/%s", c->dir, name);
	snprintf(text, sizeof(text), "../video%d", n);
	unlink(link);
	if (symlink(text, link))
		return err_out(err, errlen, "cannot link %s: %s", link, strerror(errno));
	return 0;
}

static void remove_node(struct fc_cam *c)
{
	char path[FC_PATH * 2], name[200];
	by_id_name(c, name, sizeof(name));
	snprintf(path, sizeof(path), "%s/by-id/%s", c->dir, name);
	unlink(path);
	snprintf(path, sizeof(path), "%s/video%d", c->dir, c->sh->node);
	unlink(path);
	snprintf(path, sizeof(path), "%s/.fakecam/sys/81:%d", c->dir, c->sh->node);
	rm_tree(path);
}

static int map_state(struct fc_cam *c, const char *dir, int index, int create)
{
	char path[FC_PATH * 2];
	snprintf(path, sizeof(path), "%s/.fakecam/cam%d.state", dir, index);
	int fd = fc_real.open(path, O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), 0660);
	if (fd < 0)
		return -1;
	/* every process that may open the camera writes its state (controls, ownership) */
	if (create && (fchmod(fd, 0666) || ftruncate(fd, sizeof(struct fc_shared)))) {
		fc_real.close(fd);
		return -1;
	}
	void *m = fc_real.mmap(NULL, sizeof(struct fc_shared), PROT_READ | PROT_WRITE, MAP_SHARED,
			       fd, 0);
	if (m == MAP_FAILED) {
		fc_real.close(fd);
		return -1;
	}
	c->sh = m;
	c->state_fd = fd;
	c->index = index;
	snprintf(c->dir, sizeof(c->dir), "%s", dir);
	if (!create) {
		if (c->sh->magic != FC_STATE_MAGIC || c->sh->version != FC_STATE_VERSION)
			return -1;
		c->profile = fc_profile_find(c->sh->profile);
		if (!c->profile)
			return -1;
	}
	return 0;
}

static void unmap_state(struct fc_cam *c)
{
	if (c->sh)
		fc_real.munmap(c->sh, sizeof(struct fc_shared));
	if (c->state_fd > 0)
		fc_real.close(c->state_fd);
	c->sh = NULL;
	c->state_fd = -1;
}

int fc_dir_init(const char *dir)
{
	char real[FC_PATH];
	if (!realpath(dir, real))
		return -1;
	snprintf(dir_path, sizeof(dir_path), "%s", real);
	ncams = 0;
	for (int i = 0; i < FC_MAX_CAMS; i++) {
		if (map_state(&cams[ncams], dir_path, i, 0))
			break;
		ncams++;
	}
	return ncams ? 0 : -1;
}

const char *fc_dir(void)
{
	return dir_path[0] ? dir_path : NULL;
}

int fc_cam_count(void)
{
	return ncams;
}

struct fc_cam *fc_cam_get(int index)
{
	return index >= 0 && index < ncams ? &cams[index] : NULL;
}

struct fc_cam *fc_cam_by_minor(int minor)
{
	for (int i = 0; i < ncams; i++)
		if (cams[i].sh->plugged && cams[i].sh->node == minor)
			return &cams[i];
	return NULL;
}

/* real_path is already resolved (no symlinks): DIR/videoN of a plugged camera. */
struct fc_cam *fc_cam_by_node_path(const char *real_path)
{
	size_t n = strlen(dir_path);
	if (!n || strncmp(real_path, dir_path, n) || real_path[n] != '/')
		return NULL;
	const char *base = real_path + n + 1;
	if (strncmp(base, "video", 5) || !isdigit((unsigned char)base[5]))
		return NULL;
	char *end;
	long minor = strtol(base + 5, &end, 10);
	if (*end)
		return NULL;
	return fc_cam_by_minor((int)minor);
}

/* ---- the interface of fakecam.py and fakecam-ctl ---- */

API int fakecam_create(const char *dir, int count, const char *profiles_csv,
		       const char *frames_dir, char *err, size_t errlen)
{
	char path[FC_PATH * 2], real[FC_PATH], list[256];
	const struct fc_profile *profs[FC_MAX_CAMS];
	int nprofs = 0;

	fc_shim_init();
	if (count < 1 || count > FC_MAX_CAMS)
		return err_out(err, errlen, "--cameras must be 1 to %d", FC_MAX_CAMS);
	snprintf(list, sizeof(list), "%s", profiles_csv && *profiles_csv ? profiles_csv : "c920");
	for (char *save, *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (nprofs == FC_MAX_CAMS)
			return err_out(err, errlen, "more profiles than cameras");
		profs[nprofs] = fc_profile_find(tok);
		if (!profs[nprofs])
			return err_out(err, errlen, "unknown profile '%s' (known: %s)", tok,
				       fc_profile_names());
		nprofs++;
	}
	if (nprofs > count)
		return err_out(err, errlen, "%d profiles for %d cameras", nprofs, count);
	if (mkdir(dir, 0755) && errno != EEXIST)
		return err_out(err, errlen, "cannot create %s: %s", dir, strerror(errno));
	if (!realpath(dir, real))
		return err_out(err, errlen, "%s: %s", dir, strerror(errno));
	snprintf(path, sizeof(path), "%s/.fakecam/cam0.state", real);
	if (!access(path, F_OK))
		return err_out(err, errlen, "%s already holds emulated cameras", real);
	snprintf(path, sizeof(path), "%s/.fakecam", real);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/.fakecam/sys", real);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/by-id", real);
	mkdir(path, 0755);
	/* what /dev/v4l lists under fakecam-run --dev */
	snprintf(path, sizeof(path), "%s/.fakecam/v4l", real);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/.fakecam/v4l/by-id", real);
	mkdir(path, 0755);
	if (frames_dir && *frames_dir) {
		char frames_real[FC_PATH];
		if (!realpath(frames_dir, frames_real))
			return err_out(err, errlen, "frames directory %s: %s", frames_dir,
				       strerror(errno));
		snprintf(path, sizeof(path), "%s/.fakecam/frames", real);
		if (symlink(frames_real, path))
			return err_out(err, errlen, "cannot link %s: %s", path, strerror(errno));
	}
	for (int i = 0; i < count; i++) {
		struct fc_cam c = {0};
		if (map_state(&c, real, i, 1))
			return err_out(err, errlen, "cannot create the state of cam%d: %s", i,
				       strerror(errno));
		c.profile = profs[i < nprofs ? i : nprofs - 1];
		memset(c.sh, 0, sizeof(*c.sh));
		snprintf(c.sh->profile, sizeof(c.sh->profile), "%s", c.profile->name);
		c.sh->index = i;
		c.sh->node = i;
		c.sh->plugged = 1;
		c.sh->generation = 1;
		c.sh->next_handle = 1;
		fc_reset_driver_state(&c);
		int ret = make_node(&c, err, errlen);
		c.sh->version = FC_STATE_VERSION;
		c.sh->magic = FC_STATE_MAGIC;
		unmap_state(&c);
		if (ret)
			return ret;
	}
	return 0;
}

static int find_cam(struct fc_cam *all, int n, const char *name)
{
	const char *digits = NULL;
	if (!strncmp(name, "video", 5))
		digits = name + 5;
	else if (!strncmp(name, "cam", 3))
		digits = name + 3;
	else
		digits = name;
	char *end;
	long v = strtol(digits, &end, 10);
	if (!*digits || *end)
		return -1;
	if (!strncmp(name, "video", 5)) {
		/* The plugged camera with that node, else the one that had it last. */
		for (int i = 0; i < n; i++)
			if (all[i].sh->plugged && all[i].sh->node == v)
				return i;
		for (int i = 0; i < n; i++)
			if (all[i].sh->node == v)
				return i;
		return -1;
	}
	return v >= 0 && v < n ? (int)v : -1;
}

static int open_all(const char *dir, struct fc_cam *all, char *real, char *err, size_t errlen)
{
	int n = 0;
	fc_shim_init();
	if (!realpath(dir, real))
		return err_out(err, errlen, "%s: %s", dir, strerror(errno));
	while (n < FC_MAX_CAMS && !map_state(&all[n], real, n, 0))
		n++;
	if (!n)
		return err_out(err, errlen, "%s holds no emulated camera (see fakecam-run)", real);
	return n;
}

API int fakecam_ctl(const char *dir, const char *camera, const char *action, int number,
		    char *err, size_t errlen)
{
	struct fc_cam all[FC_MAX_CAMS] = {0};
	char real[FC_PATH];
	int n = open_all(dir, all, real, err, errlen);
	if (n < 0)
		return -1;
	int ret = 0;
	int i = find_cam(all, n, camera);
	if (i < 0) {
		ret = err_out(err, errlen, "no camera %s in %s", camera, real);
		goto out;
	}
	struct fc_cam *c = &all[i];
	struct fc_shared *sh = c->sh;
	fc_lock(c);
	if (!strcmp(action, "unplug")) {
		if (!sh->plugged) {
			ret = err_out(err, errlen, "cam%d is already unplugged", i);
		} else {
			remove_node(c);
			sh->plugged = 0;
			sh->generation++;
			sh->streaming = 0;
			sh->owner_pid = 0;
		}
	} else if (!strcmp(action, "replug")) {
		int node = number >= 0 ? number : sh->node;
		for (int j = 0; j < n && !ret; j++)
			if (j != i && all[j].sh->plugged && all[j].sh->node == node)
				ret = err_out(err, errlen, "video%d is taken by cam%d", node, j);
		if (!ret) {
			if (sh->plugged) {
				remove_node(c); /* a replug without unplug: a bus reset */
				sh->plugged = 0;
			}
			sh->node = node;
			sh->generation++;
			sh->fault = FC_FAULT_NONE;
			/* A power cycle: the camera comes back with its defaults. */
			fc_reset_driver_state(c);
			ret = make_node(c, err, errlen);
			if (!ret)
				sh->plugged = 1;
		}
	} else if (!strcmp(action, "stall")) {
		sh->fault = FC_FAULT_STALL;
	} else if (!strcmp(action, "corrupt")) {
		sh->fault = FC_FAULT_CORRUPT;
	} else if (!strcmp(action, "nospace")) {
		sh->fault = FC_FAULT_NOSPACE;
	} else if (!strcmp(action, "clear")) {
		sh->fault = FC_FAULT_NONE;
	} else {
		ret = err_out(err, errlen,
			      "unknown action '%s' (unplug, replug, stall, corrupt, nospace, clear)",
			      action);
	}
	fc_unlock(c);
out:
	for (int j = 0; j < n; j++)
		unmap_state(&all[j]);
	return ret;
}

static const char *fault_name(int f)
{
	switch (f) {
	case FC_FAULT_STALL:
		return "stall";
	case FC_FAULT_CORRUPT:
		return "corrupt";
	case FC_FAULT_NOSPACE:
		return "nospace";
	default:
		return "none";
	}
}

/* JSON: one object per camera. */
API int fakecam_describe(const char *dir, char *buf, size_t len, char *err, size_t errlen)
{
	struct fc_cam all[FC_MAX_CAMS] = {0};
	char real[FC_PATH], name[200];
	int n = open_all(dir, all, real, err, errlen);
	if (n < 0)
		return -1;
	size_t used = 0;
#define OUT(...)                                                                     \
	do {                                                                         \
		int w = snprintf(buf + used, used < len ? len - used : 0, __VA_ARGS__); \
		used += w > 0 ? (size_t)w : 0;                                       \
	} while (0)
	OUT("[");
	for (int i = 0; i < n; i++) {
		struct fc_shared *sh = all[i].sh;
		const struct fc_profile *p = all[i].profile;
		const struct fc_format *f = &p->formats[sh->fmt_index];
		const struct fc_frame *fr = &f->frames[sh->frame_index];
		int owner = fc_pid_alive(sh->owner_pid) ? sh->owner_pid : 0;
		by_id_name(&all[i], name, sizeof(name));
		OUT("%s{\"index\": %d, \"profile\": \"%s\", \"card\": \"%s\", \"plugged\": %s, "
		    "\"node\": \"video%d\", \"by_id\": \"%s\", \"generation\": %u, \"fault\": \"%s\", "
		    "\"owner_pid\": %d, \"streaming\": %s, \"frames\": %llu, \"corrupted\": %llu, "
		    "\"format\": {\"fourcc\": \"%.4s\", \"width\": %d, \"height\": %d, "
		    "\"interval_100ns\": %u}, \"controls\": {",
		    i ? ", " : "", i, p->name, p->card, sh->plugged ? "true" : "false", sh->node,
		    name, sh->generation, fault_name(sh->fault), owner,
		    owner && sh->streaming ? "true" : "false",
		    (unsigned long long)sh->frames_delivered,
		    (unsigned long long)sh->frames_corrupted, (const char *)&f->fourcc, fr->width,
		    fr->height, sh->interval);
		for (int k = 0; k < p->nctrls; k++) {
			/* v4l2-ctl's short names: lower case, runs of other characters as "_". */
			char shortname[64];
			size_t o = 0;
			for (const char *s = p->ctrls[k].name; *s && o < sizeof(shortname) - 1; s++) {
				if (isalnum((unsigned char)*s))
					shortname[o++] = (char)tolower((unsigned char)*s);
				else if (o && shortname[o - 1] != '_')
					shortname[o++] = '_';
			}
			while (o && shortname[o - 1] == '_')
				o--;
			shortname[o] = 0;
			OUT("%s\"%s\": %d", k ? ", " : "", shortname, sh->ctrl[k]);
		}
		OUT("}}");
	}
	OUT("]");
#undef OUT
	for (int j = 0; j < n; j++)
		unmap_state(&all[j]);
	if (used >= len)
		return err_out(err, errlen, "description longer than %zu bytes", len);
	return 0;
}
