// SPDX-License-Identifier: GPL-2.0
/*
 * testgpu_vsec: a second helper module, standing in for intel_vsec.
 *
 * The backported i915 calls intel_vsec_register(); a stale in-tree intel_vsec then shows
 * up as "Unknown symbol" at load. This module exports the equivalent symbol so the test
 * driver has the same two-dependency shape.
 */
#include <linux/init.h>
#include <linux/module.h>
#include <linux/atomic.h>

#include "testgpu_shared.h"

static atomic_t testgpu_vsec_users = ATOMIC_INIT(0);

int testgpu_vsec_register(const char *owner)
{
	int users = atomic_inc_return(&testgpu_vsec_users);

	pr_info("testgpu_vsec: registered %s (%d users)\n", owner, users);
	return 0;
}
EXPORT_SYMBOL_GPL(testgpu_vsec_register);

void testgpu_vsec_unregister(const char *owner)
{
	int users = atomic_dec_return(&testgpu_vsec_users);

	pr_info("testgpu_vsec: unregistered %s (%d users)\n", owner, users);
}
EXPORT_SYMBOL_GPL(testgpu_vsec_unregister);

static int __init testgpu_vsec_init(void)
{
	pr_info("testgpu_vsec: loaded\n");
	return 0;
}

static void __exit testgpu_vsec_exit(void)
{
	pr_info("testgpu_vsec: unloaded\n");
}

module_init(testgpu_vsec_init);
module_exit(testgpu_vsec_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("testgpu vendor-specific capability helper (test stand-in for intel_vsec)");
MODULE_VERSION(TESTGPU_VERSION_STRING);
