"""The real-kernel test harness: Debian's installed kernel under qemu (TCG) with the host root as guest root.

Host side: ``vm.machine`` (``Vm``, ``VmResult``), ``vm.kernel``, ``vm.initramfs``, ``vm.testdriver``.
Guest side: ``vm.guest`` (imported by scripts running inside the VM; keep this file free of imports).
"""
