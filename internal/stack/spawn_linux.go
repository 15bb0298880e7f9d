package stack

import (
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

// sysProcAttr puts a child in its own process group, so that a Ctrl-C in the terminal reaches
// only the parent, which then stops the children in order; and has the kernel kill the child
// when the parent dies without cleaning up (a test timeout, a crash).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// Pdeathsig fires when the thread that started the child exits, not the process; so every
// child is started from one goroutine locked to a thread that lives as long as the process.
var (
	spawnOnce sync.Once
	spawnc    = make(chan spawnRequest)
)

type spawnRequest struct {
	cmd  *exec.Cmd
	errc chan error
}

func spawn(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		go func() {
			runtime.LockOSThread() // never unlocked: the thread must outlive every child
			for r := range spawnc {
				r.errc <- r.cmd.Start()
			}
		}()
	})
	errc := make(chan error, 1)
	spawnc <- spawnRequest{cmd, errc}
	return <-errc
}
