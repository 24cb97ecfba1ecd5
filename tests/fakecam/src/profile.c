/*
 * Camera models. The numbers of the c920 profile are those a Logitech HD Pro Webcam C920
 * (046d:082d) reports through uvcvideo, taken from public dumps of a real camera:
 *   formats, sizes, intervals: `v4l2-ctl --list-formats-ext` in Motion-Project/motion issue 86
 *     (YUYV) and dusty-nv/jetson-inference issue 491 (MJPG), and a crowsnest log in
 *     bigtreetech/CB2 issue 128 (YUYV 864x480 from 24 fps, 960x720 and 1024x576 from 15 fps);
 *     the C920 offers 30/24/20/15/10/7.5/5 fps, never 25: asking 25 gives 24, as uvcvideo
 *     picks the nearest interval;
 *   controls (ranges, defaults, flags, menus): `v4l2-ctl --list-ctrls-menus` in the same
 *     crowsnest log (bigtreetech/CB2 issue 128), `v4l2-ctl --all` in motioneye-project/motioneyeos
 *     issue 2217 and the control list in soyersoyer/fmp4streamer issue 7;
 *   QUERYCAP: capabilities 0x84a00001, device caps 0x04200001 (motioneyeos issue 2217).
 * Newer C920 firmware has no H264 format; this profile has none either.
 * The yuyv profile follows the generic "USB 2.0 Camera" modules (Motion-Project/motion issue 1612).
 */
#include <string.h>

#include "fakecam.h"

/* Frame intervals in 100 ns units, as UVC descriptors give them. */
#define F30 333333
#define F25 400000
#define F24 416666
#define F20 500000
#define F15 666666
#define F10 1000000
#define F7_5 1333333
#define F5 2000000
#define F2 5000000

#define ALL_RATES 7, {F30, F24, F20, F15, F10, F7_5, F5}
#define FROM24 6, {F24, F20, F15, F10, F7_5, F5}
#define FROM15 4, {F15, F10, F7_5, F5}
#define FROM10 3, {F10, F7_5, F5}
#define FROM7_5 2, {F7_5, F5}

/* uvcvideo lists sizes in descriptor order: the C920 starts with 640x480. */
static const struct fc_frame c920_yuyv[] = {
	{640, 480, ALL_RATES},   {160, 90, ALL_RATES},   {160, 120, ALL_RATES},
	{176, 144, ALL_RATES},   {320, 180, ALL_RATES},  {320, 240, ALL_RATES},
	{352, 288, ALL_RATES},   {432, 240, ALL_RATES},  {640, 360, ALL_RATES},
	{800, 448, ALL_RATES},   {800, 600, FROM24},     {864, 480, FROM24},
	{960, 720, FROM15},      {1024, 576, FROM15},    {1280, 720, FROM10},
	{1600, 896, FROM7_5},    {1920, 1080, 1, {F5}},  {2304, 1296, 1, {F2}},
	{2304, 1536, 1, {F2}},
};

static const struct fc_frame c920_mjpg[] = {
	{640, 480, ALL_RATES},  {160, 90, ALL_RATES},   {160, 120, ALL_RATES},
	{176, 144, ALL_RATES},  {320, 180, ALL_RATES},  {320, 240, ALL_RATES},
	{352, 288, ALL_RATES},  {432, 240, ALL_RATES},  {640, 360, ALL_RATES},
	{800, 448, ALL_RATES},  {800, 600, ALL_RATES},  {864, 480, ALL_RATES},
	{960, 720, ALL_RATES},  {1024, 576, ALL_RATES}, {1280, 720, ALL_RATES},
	{1600, 896, ALL_RATES}, {1920, 1080, ALL_RATES},
};

static const struct fc_format c920_formats[] = {
	{V4L2_PIX_FMT_YUYV, 0, sizeof(c920_yuyv) / sizeof(c920_yuyv[0]), c920_yuyv},
	{V4L2_PIX_FMT_MJPEG, 1, sizeof(c920_mjpg) / sizeof(c920_mjpg[0]), c920_mjpg},
};

/* Master/slave pairs are those of uvcvideo's mappings: the slave is inactive unless its
 * master has the manual value. Names are v4l2-core's (v4l2_ctrl_get_name). */
static const struct fc_ctrl c920_ctrls[] = {
	{V4L2_CID_BRIGHTNESS, "Brightness", V4L2_CTRL_TYPE_INTEGER, 0, 255, 1, 128, 0, 0, 0},
	{V4L2_CID_CONTRAST, "Contrast", V4L2_CTRL_TYPE_INTEGER, 0, 255, 1, 128, 0, 0, 0},
	{V4L2_CID_SATURATION, "Saturation", V4L2_CTRL_TYPE_INTEGER, 0, 255, 1, 128, 0, 0, 0},
	{V4L2_CID_AUTO_WHITE_BALANCE, "White Balance, Automatic", V4L2_CTRL_TYPE_BOOLEAN, 0, 1, 1,
	 1, 0, 0, 0},
	{V4L2_CID_GAIN, "Gain", V4L2_CTRL_TYPE_INTEGER, 0, 255, 1, 0, 0, 0, 0},
	{V4L2_CID_POWER_LINE_FREQUENCY, "Power Line Frequency", V4L2_CTRL_TYPE_MENU, 0, 2, 1, 2,
	 0x7, 0, 0},
	{V4L2_CID_WHITE_BALANCE_TEMPERATURE, "White Balance Temperature", V4L2_CTRL_TYPE_INTEGER,
	 2000, 6500, 1, 4000, 0, V4L2_CID_AUTO_WHITE_BALANCE, 0},
	{V4L2_CID_SHARPNESS, "Sharpness", V4L2_CTRL_TYPE_INTEGER, 0, 255, 1, 128, 0, 0, 0},
	{V4L2_CID_BACKLIGHT_COMPENSATION, "Backlight Compensation", V4L2_CTRL_TYPE_INTEGER, 0, 1, 1,
	 0, 0, 0, 0},
	/* The C920 reports (GET_RES) manual and aperture priority only: menu entries 1 and 3. */
	{V4L2_CID_EXPOSURE_AUTO, "Auto Exposure", V4L2_CTRL_TYPE_MENU, 0, 3, 1,
	 V4L2_EXPOSURE_APERTURE_PRIORITY, 0xa, 0, 0},
	{V4L2_CID_EXPOSURE_ABSOLUTE, "Exposure Time, Absolute", V4L2_CTRL_TYPE_INTEGER, 3, 2047, 1,
	 250, 0, V4L2_CID_EXPOSURE_AUTO, V4L2_EXPOSURE_MANUAL},
	{V4L2_CID_EXPOSURE_AUTO_PRIORITY, "Exposure, Dynamic Framerate", V4L2_CTRL_TYPE_BOOLEAN, 0,
	 1, 1, 0, 0, 0, 0},
	{V4L2_CID_PAN_ABSOLUTE, "Pan, Absolute", V4L2_CTRL_TYPE_INTEGER, -36000, 36000, 3600, 0, 0,
	 0, 0},
	{V4L2_CID_TILT_ABSOLUTE, "Tilt, Absolute", V4L2_CTRL_TYPE_INTEGER, -36000, 36000, 3600, 0,
	 0, 0, 0},
	{V4L2_CID_FOCUS_ABSOLUTE, "Focus, Absolute", V4L2_CTRL_TYPE_INTEGER, 0, 250, 5, 0, 0,
	 V4L2_CID_FOCUS_AUTO, 0},
	{V4L2_CID_FOCUS_AUTO, "Focus, Automatic Continuous", V4L2_CTRL_TYPE_BOOLEAN, 0, 1, 1, 1, 0,
	 0, 0},
	{V4L2_CID_ZOOM_ABSOLUTE, "Zoom, Absolute", V4L2_CTRL_TYPE_INTEGER, 100, 500, 1, 100, 0, 0,
	 0},
};

#define YUYV_RATES 6, {F30, F25, F20, F15, F10, F5}
static const struct fc_frame generic_yuyv[] = {
	{640, 480, YUYV_RATES},
	{352, 288, YUYV_RATES},
	{320, 240, YUYV_RATES},
	{176, 144, YUYV_RATES},
	{160, 120, YUYV_RATES},
	{800, 600, 3, {F20, F15, F10}},
	{1280, 720, 2, {F10, F5}},
};
static const struct fc_format generic_formats[] = {
	{V4L2_PIX_FMT_YUYV, 0, sizeof(generic_yuyv) / sizeof(generic_yuyv[0]), generic_yuyv},
};
static const struct fc_ctrl generic_ctrls[] = {
	{V4L2_CID_BRIGHTNESS, "Brightness", V4L2_CTRL_TYPE_INTEGER, -64, 64, 1, 0, 0, 0, 0},
	{V4L2_CID_CONTRAST, "Contrast", V4L2_CTRL_TYPE_INTEGER, 0, 64, 1, 32, 0, 0, 0},
	{V4L2_CID_SATURATION, "Saturation", V4L2_CTRL_TYPE_INTEGER, 0, 128, 1, 64, 0, 0, 0},
	{V4L2_CID_HUE, "Hue", V4L2_CTRL_TYPE_INTEGER, -40, 40, 1, 0, 0, 0, 0},
	{V4L2_CID_AUTO_WHITE_BALANCE, "White Balance, Automatic", V4L2_CTRL_TYPE_BOOLEAN, 0, 1, 1,
	 1, 0, 0, 0},
	{V4L2_CID_GAMMA, "Gamma", V4L2_CTRL_TYPE_INTEGER, 72, 500, 1, 100, 0, 0, 0},
	{V4L2_CID_GAIN, "Gain", V4L2_CTRL_TYPE_INTEGER, 0, 100, 1, 0, 0, 0, 0},
	{V4L2_CID_POWER_LINE_FREQUENCY, "Power Line Frequency", V4L2_CTRL_TYPE_MENU, 0, 2, 1, 1,
	 0x7, 0, 0},
	{V4L2_CID_WHITE_BALANCE_TEMPERATURE, "White Balance Temperature", V4L2_CTRL_TYPE_INTEGER,
	 2800, 6500, 1, 4600, 0, V4L2_CID_AUTO_WHITE_BALANCE, 0},
	{V4L2_CID_SHARPNESS, "Sharpness", V4L2_CTRL_TYPE_INTEGER, 0, 6, 1, 3, 0, 0, 0},
	{V4L2_CID_BACKLIGHT_COMPENSATION, "Backlight Compensation", V4L2_CTRL_TYPE_INTEGER, 0, 2, 1,
	 1, 0, 0, 0},
	{V4L2_CID_EXPOSURE_AUTO, "Auto Exposure", V4L2_CTRL_TYPE_MENU, 0, 3, 1,
	 V4L2_EXPOSURE_APERTURE_PRIORITY, 0xa, 0, 0},
	{V4L2_CID_EXPOSURE_ABSOLUTE, "Exposure Time, Absolute", V4L2_CTRL_TYPE_INTEGER, 1, 5000, 1,
	 157, 0, V4L2_CID_EXPOSURE_AUTO, V4L2_EXPOSURE_MANUAL},
	{V4L2_CID_EXPOSURE_AUTO_PRIORITY, "Exposure, Dynamic Framerate", V4L2_CTRL_TYPE_BOOLEAN, 0,
	 1, 1, 0, 0, 0, 0},
};

/* A camera that enumerates and negotiates like any other but whose stream never completes a
 * frame: a broken module, or what an app sees on a node that is not the picture. */
static const struct fc_frame dead_frames[] = {
	{640, 480, 2, {F30, F15}},
	{320, 240, 2, {F30, F15}},
};
static const struct fc_format dead_formats[] = {
	{V4L2_PIX_FMT_MJPEG, 1, 2, dead_frames},
	{V4L2_PIX_FMT_YUYV, 0, 2, dead_frames},
};
static const struct fc_ctrl dead_ctrls[] = {
	{V4L2_CID_BRIGHTNESS, "Brightness", V4L2_CTRL_TYPE_INTEGER, 0, 255, 1, 128, 0, 0, 0},
};

static const struct fc_profile profiles[] = {
	{"c920", "HD Pro Webcam C920", "usb-046d_HD_Pro_Webcam_C920", 0x046d, 0x082d, 0, 2,
	 c920_formats, sizeof(c920_ctrls) / sizeof(c920_ctrls[0]), c920_ctrls},
	{"yuyv", "USB 2.0 Camera: USB Camera", "usb-Generic_USB_2.0_Camera", 0x05e3, 0x0510, 0, 1,
	 generic_formats, sizeof(generic_ctrls) / sizeof(generic_ctrls[0]), generic_ctrls},
	{"dead", "USB Camera", "usb-Generic_USB_Camera", 0x1908, 0x2310, 1, 2, dead_formats, 1,
	 dead_ctrls},
};

const struct fc_profile *fc_profile_find(const char *name)
{
	for (size_t i = 0; i < sizeof(profiles) / sizeof(profiles[0]); i++)
		if (!strcmp(profiles[i].name, name))
			return &profiles[i];
	return NULL;
}

const char *fc_profile_names(void)
{
	return "c920, yuyv, dead";
}

const struct fc_ctrl *fc_ctrl_find(const struct fc_profile *p, uint32_t id, int *index)
{
	for (int i = 0; i < p->nctrls; i++)
		if (p->ctrls[i].id == id) {
			if (index)
				*index = i;
			return &p->ctrls[i];
		}
	return NULL;
}

/* v4l2-core's menu strings for the two menu controls UVC cameras have. */
const char *fc_menu_name(uint32_t id, int index)
{
	static const char *const plf[] = {"Disabled", "50 Hz", "60 Hz", "Auto"};
	static const char *const ae[] = {"Auto Mode", "Manual Mode", "Shutter Priority Mode",
					 "Aperture Priority Mode"};
	if (index < 0 || index > 3)
		return NULL;
	if (id == V4L2_CID_POWER_LINE_FREQUENCY)
		return plf[index];
	if (id == V4L2_CID_EXPOSURE_AUTO)
		return ae[index];
	return NULL;
}
