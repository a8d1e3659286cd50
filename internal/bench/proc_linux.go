package bench

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the kernel kill cmd's process if this one dies first
// (even by SIGKILL or a test timeout), so that bench chaos never leaves a
// replica running behind it.
func dieWithParent(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
