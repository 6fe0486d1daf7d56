/* SPDX-License-Identifier: GPL-2.0 */
/* Declarations shared by the three testgpu modules. */
#ifndef TESTGPU_SHARED_H
#define TESTGPU_SHARED_H

#include <generated/utsrelease.h>

#define TESTGPU_BACKPORT_TAG "testgpu-1.0"
/* Same shape as the backport's /sys/module/i915/version: "... backported to <kernel> using backports <tag>". */
#define TESTGPU_VERSION_STRING "1.0.0 backported to " UTS_RELEASE " using backports " TESTGPU_BACKPORT_TAG

/* Every firmware blob starts with this magic; the main module refuses anything else. */
#define TESTGPU_FW_MAGIC "TGFW"

const char *testgpu_compat_backport_tag(void);
int testgpu_vsec_register(const char *owner);
void testgpu_vsec_unregister(const char *owner);

#endif /* TESTGPU_SHARED_H */
