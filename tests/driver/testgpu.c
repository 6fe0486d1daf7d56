// SPDX-License-Identifier: GPL-2.0
/*
 * testgpu: the main module of the test driver, shaped like the backported i915.
 *
 * - depends on testgpu_compat and testgpu_vsec through the symbols it calls;
 * - carries a version string containing "backported", like the backport's;
 * - declares its firmware with MODULE_FIRMWARE and requests it at load: a missing or
 *   malformed blob fails the load with one clear kernel log line (as a GuC fetch failure
 *   fails i915 on DG2);
 * - reports what it loaded in read-only parameters (fw_status, fw_size, fw_loaded);
 * - registers /dev/testgpu; an open handle pins the module (fops.owner), so rmmod says
 *   "in use" until it is closed, as an open /dev/dri/renderD* does for i915.
 *
 * Make variables for build tests (see Kbuild): TESTGPU_BROKEN_SOURCE=1 adds a compile
 * error, TESTGPU_BROKEN_SYMBOL=1 calls a symbol no module exports.
 */
#include <linux/firmware.h>
#include <linux/fs.h>
#include <linux/init.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/string.h>

#include "testgpu_shared.h"

#define TESTGPU_GUC_FW "testgpu/testgpu_guc_1.0.bin"
#define TESTGPU_HUC_FW "testgpu/testgpu_huc_1.0.bin"

#define TESTGPU_ENABLE_GUC_BIT 0x1
#define TESTGPU_ENABLE_HUC_BIT 0x2

static int enable_guc = TESTGPU_ENABLE_GUC_BIT | TESTGPU_ENABLE_HUC_BIT;
module_param(enable_guc, int, 0444);
MODULE_PARM_DESC(enable_guc,
		 "Firmware to load: bit 0 GuC, bit 1 HuC (default 3; 0 loads none)");

static int fw_status = 1;
module_param(fw_status, int, 0444);
MODULE_PARM_DESC(fw_status, "Firmware status (read-only): 0 loaded, 1 none requested");

static long fw_size;
module_param(fw_size, long, 0444);
MODULE_PARM_DESC(fw_size, "Bytes of firmware loaded (read-only)");

static char fw_loaded_buf[128];
static char *fw_loaded = fw_loaded_buf;
module_param(fw_loaded, charp, 0444);
MODULE_PARM_DESC(fw_loaded, "Comma-separated firmware names loaded (read-only)");

MODULE_FIRMWARE(TESTGPU_GUC_FW);
MODULE_FIRMWARE(TESTGPU_HUC_FW);

#ifdef TESTGPU_BROKEN_SYMBOL
/* Exported by nothing: modpost warns (or fails), and modprobe reports "Unknown symbol". */
extern int testgpu_missing_symbol(void);
#endif

static ssize_t testgpu_read(struct file *file, char __user *buf, size_t len, loff_t *off)
{
	char status[256];
	int n = scnprintf(status, sizeof(status),
			  "version=%s enable_guc=%d fw_status=%d fw_size=%ld fw_loaded=%s\n",
			  TESTGPU_VERSION_STRING, enable_guc, fw_status, fw_size,
			  fw_loaded_buf);

	return simple_read_from_buffer(buf, len, off, status, n);
}

static const struct file_operations testgpu_fops = {
	/* The open file holds a reference on this module: rmmod fails with "in use". */
	.owner = THIS_MODULE,
	.read = testgpu_read,
	.llseek = default_llseek,
};

static struct miscdevice testgpu_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "testgpu",
	.fops = &testgpu_fops,
	.mode = 0666,
};

static int testgpu_fetch_firmware(const char *kind, const char *name)
{
	const struct firmware *fw;
	size_t magic_len = strlen(TESTGPU_FW_MAGIC);
	int ret;

	ret = request_firmware(&fw, name, testgpu_misc.this_device);
	if (ret) {
		pr_err("testgpu: %s firmware %s: fetch failed with error %d\n", kind, name, ret);
		return ret;
	}
	if (fw->size < magic_len || memcmp(fw->data, TESTGPU_FW_MAGIC, magic_len) != 0) {
		pr_err("testgpu: %s firmware %s: bad magic, not a testgpu blob (%zu bytes)\n",
		       kind, name, fw->size);
		release_firmware(fw);
		return -EINVAL;
	}
	pr_info("testgpu: %s firmware %s loaded (%zu bytes)\n", kind, name, fw->size);
	fw_size += fw->size;
	if (fw_loaded_buf[0])
		strlcat(fw_loaded_buf, ",", sizeof(fw_loaded_buf));
	strlcat(fw_loaded_buf, name, sizeof(fw_loaded_buf));
	release_firmware(fw);
	return 0;
}

#ifdef TESTGPU_BROKEN_SOURCE
static int testgpu_resize_bar(int bar, int size_order)
{
	return bar + size_order;
}
#endif

static int __init testgpu_init(void)
{
	int ret;

	pr_info("testgpu: [drm] TESTGPU BACKPORTED INIT %s (compat %s)\n",
		TESTGPU_VERSION_STRING, testgpu_compat_backport_tag());
#ifdef TESTGPU_BROKEN_SOURCE
	/* Mirrors the real breakage seen on newer stable kernels: a changed signature. */
	ret = testgpu_resize_bar(0);
#endif
#ifdef TESTGPU_BROKEN_SYMBOL
	ret = testgpu_missing_symbol();
#endif

	ret = misc_register(&testgpu_misc);
	if (ret) {
		pr_err("testgpu: cannot register /dev/testgpu: error %d\n", ret);
		return ret;
	}

	fw_status = 1;
	fw_size = 0;
	fw_loaded_buf[0] = '\0';
	if (enable_guc & TESTGPU_ENABLE_GUC_BIT) {
		ret = testgpu_fetch_firmware("GuC", TESTGPU_GUC_FW);
		if (ret)
			goto err_misc;
		fw_status = 0;
	}
	if (enable_guc & TESTGPU_ENABLE_HUC_BIT) {
		ret = testgpu_fetch_firmware("HuC", TESTGPU_HUC_FW);
		if (ret)
			goto err_misc;
		fw_status = 0;
	}

	ret = testgpu_vsec_register("testgpu");
	if (ret)
		goto err_misc;

	pr_info("testgpu: ready, /dev/testgpu registered (enable_guc=%d fw_status=%d)\n",
		enable_guc, fw_status);
	return 0;

err_misc:
	misc_deregister(&testgpu_misc);
	pr_err("testgpu: load failed with error %d\n", ret);
	return ret;
}

static void __exit testgpu_exit(void)
{
	testgpu_vsec_unregister("testgpu");
	misc_deregister(&testgpu_misc);
	pr_info("testgpu: unloaded\n");
}

module_init(testgpu_init);
module_exit(testgpu_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("testgpu: test driver shaped like the i915 backport");
MODULE_VERSION(TESTGPU_VERSION_STRING);
