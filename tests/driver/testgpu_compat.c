// SPDX-License-Identifier: GPL-2.0
/*
 * testgpu_compat: the test driver's compat layer, standing in for i915-compat.
 *
 * The real backport ships a compat module that every other backported module links
 * against; loading it prints "COMPAT BACKPORTED INIT". This one does the same with its
 * own marker and exports one symbol the main module calls, so modprobe must load it first
 * and rmmod cannot remove it while testgpu is loaded.
 */
#include <linux/init.h>
#include <linux/module.h>
#include <generated/utsrelease.h>

#include "testgpu_shared.h"

const char *testgpu_compat_backport_tag(void)
{
	return TESTGPU_BACKPORT_TAG;
}
EXPORT_SYMBOL_GPL(testgpu_compat_backport_tag);

static int __init testgpu_compat_init(void)
{
	pr_info("TESTGPU COMPAT BACKPORTED INIT -- backports %s for %s\n",
		TESTGPU_BACKPORT_TAG, UTS_RELEASE);
	return 0;
}

static void __exit testgpu_compat_exit(void)
{
	pr_info("testgpu_compat: unloaded\n");
}

module_init(testgpu_compat_init);
module_exit(testgpu_compat_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("testgpu compat layer (test stand-in for i915-compat)");
MODULE_VERSION(TESTGPU_VERSION_STRING);
