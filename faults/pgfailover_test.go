//go:build cluster

package faults

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ordersaga/ordersaga/internal/stack"
	"github.com/ordersaga/ordersaga/pkg/database"
	"github.com/ordersaga/ordersaga/pkg/testenv"
)

const (
	pgBin  = "/usr/lib/postgresql/15/bin"
	pgBase = "/tmp/ordersaga-pg" // the scratch primary's and standby's directories

	pgPrimaryPort = 5711
	pgStandbyPort = 5712
)

// TestClusterPostgresFailover runs the stack on a scratch PostgreSQL primary with a synchronous
// streaming standby, the services' database URLs naming both (target_session_attrs=read-write).
// Mid-stream the primary stops hard and the standby is promoted: the services find the new
// primary by themselves, and since every commit they were told of had reached the standby, no
// accepted order, payment, reservation or outbox row is lost.
func TestClusterPostgresFailover(t *testing.T) {
	primary, standby := startReplicatedPostgres(t)
	server := func(ports ...int) string {
		hosts := make([]string, len(ports))
		for i, p := range ports {
			hosts[i] = "127.0.0.1:" + strconv.Itoa(p)
		}
		return "postgres://postgres@" + strings.Join(hosts, ",") + "/postgres?sslmode=disable&target_session_attrs=read-write"
	}
	checkReadWriteChosen(t, server(pgStandbyPort, pgPrimaryPort), primary)

	e := start(t, stack.Options{PostgresURL: server(pgPrimaryPort, pgStandbyPort)})
	res := e.stream(streamOptions{Orders: 500, Duration: 25 * time.Second, FaultAt: 7 * time.Second}, func(ctx context.Context) {
		if err := primary.pgCtl("stop", "-m", "immediate"); err != nil {
			t.Error(err)
			return
		}
		t.Log("primary stopped (immediate)")
		// Meanwhile the standby is read-only: the services must not settle on it.
		pause(ctx, 2*time.Second)
		began := time.Now()
		if err := standby.pgCtl("promote", "-w"); err != nil {
			t.Error(err)
			return
		}
		t.Logf("standby promoted in %s", time.Since(began).Round(time.Millisecond))
	})
	e.verify(res, 0)

	// A service that starts now connects, and migrates, past the dead host.
	e.stack.Kill("payment", 0)
	began := time.Now()
	e.stack.Restart("payment", 0)
	t.Logf("payment restarted on the promoted standby, ready in %s", time.Since(began).Round(time.Millisecond))
	if out, code := e.ordersctl("audit"); code != 0 || !strings.Contains(out, "no violations") {
		t.Errorf("ordersctl audit after the failover: exit %d\n%s", code, out)
	}
}

// checkReadWriteChosen checks that pgx, given a URL listing the read-only standby first, creates a
// database and opens its pool on the primary: target_session_attrs=read-write is honoured.
func checkReadWriteChosen(t *testing.T, standbyFirst string, primary *pgServer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	name := testenv.Name("test_failover_check")
	cfg, err := pgx.ParseConfig(strings.Replace(standbyFirst, "/postgres?", "/"+name+"?", 1))
	if err != nil {
		t.Fatal(err)
	}
	if err := database.Create(ctx, cfg); err != nil {
		t.Fatalf("create through the standby-first URL: %v", err)
	}
	defer func() {
		if err := testenv.DropDatabaseOn(standbyFirst, name); err != nil {
			t.Error(err)
		}
	}()
	pool, err := database.Open(ctx, cfg.ConnString(), testenv.Logger(t))
	if err != nil {
		t.Fatalf("open through the standby-first URL: %v", err)
	}
	defer pool.Close()
	var port string
	var recovering bool
	if err := pool.QueryRow(ctx, "SELECT current_setting('port'), pg_is_in_recovery()").Scan(&port, &recovering); err != nil {
		t.Fatal(err)
	}
	if port != strconv.Itoa(primary.port) || recovering {
		t.Fatalf("the standby-first URL reached port %s (in recovery: %v), want the primary's %d", port, recovering, primary.port)
	}
}

// pgServer is a scratch PostgreSQL server run by the postgres user from its own directory.
type pgServer struct {
	name string
	port int
	data string
}

// startReplicatedPostgres builds a primary and a synchronous streaming standby of it, each on its
// own port and data directory under pgBase, and removes both at cleanup. Leftovers of an earlier
// run are stopped and removed first.
func startReplicatedPostgres(t *testing.T) (primary, standby *pgServer) {
	t.Helper()
	began := time.Now()
	primary = &pgServer{name: "primary", port: pgPrimaryPort, data: filepath.Join(pgBase, "primary")}
	standby = &pgServer{name: "standby", port: pgStandbyPort, data: filepath.Join(pgBase, "standby")}
	reapPostgres(t, primary, standby)
	t.Cleanup(func() { reapPostgres(t, primary, standby) })
	pgUser, err := user.Lookup("postgres")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(pgUser.Uid)
	gid, _ := strconv.Atoi(pgUser.Gid)
	if err := os.MkdirAll(pgBase, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(pgBase, uid, gid); err != nil {
		t.Fatal(err)
	}
	for _, p := range []int{pgPrimaryPort, pgStandbyPort} {
		if portOpen(p) {
			t.Fatalf("port %d is taken by another process", p)
		}
	}
	if out, err := asPostgres(filepath.Join(pgBin, "initdb"), "-D", primary.data, "-U", "postgres", "-A", "trust", "--no-sync").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	// '*': the first standby that connects is the synchronous one, so a commit returns only once
	// the standby has it on disk (synchronous_commit = on).
	primary.configure(t, "synchronous_standby_names = '*'")
	if err := primary.pgCtl("start", "-w", "-l", filepath.Join(pgBase, "primary.log")); err != nil {
		t.Fatal(err)
	}
	if out, err := asPostgres(filepath.Join(pgBin, "pg_basebackup"), "-h", "127.0.0.1", "-p", strconv.Itoa(primary.port), "-U", "postgres",
		"-D", standby.data, "-R", "-X", "stream", "--checkpoint=fast").CombinedOutput(); err != nil {
		t.Fatalf("pg_basebackup: %v\n%s", err, out)
	}
	// Once promoted the standby runs alone: waiting for a standby of its own would stall every
	// commit. (A managed failover attaches a new standby; here the test ends first.)
	standby.configure(t, "synchronous_standby_names = ''")
	if err := standby.pgCtl("start", "-w", "-l", filepath.Join(pgBase, "standby.log")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", primary.port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	testenv.Eventually(t, time.Minute, "the standby streaming synchronously", func() bool {
		var state string
		err := conn.QueryRow(ctx, "SELECT sync_state FROM pg_stat_replication").Scan(&state)
		return err == nil && state == "sync"
	})
	t.Logf("PostgreSQL primary :%d with a synchronous standby :%d up in %s", primary.port, standby.port, time.Since(began).Round(time.Millisecond))
	return primary, standby
}

// configure appends settings to the server's postgresql.conf (later lines win).
func (s *pgServer) configure(t *testing.T, settings ...string) {
	t.Helper()
	conf := append([]string{
		"",
		"# scratch server of the cluster tests",
		"port = " + strconv.Itoa(s.port),
		"listen_addresses = '127.0.0.1'",
		"unix_socket_directories = '" + pgBase + "'",
		"max_connections = 200",
	}, settings...)
	f, err := os.OpenFile(filepath.Join(s.data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(strings.Join(conf, "\n") + "\n"); err != nil {
		t.Fatal(err)
	}
}

// pgCtl runs pg_ctl on the server's data directory.
func (s *pgServer) pgCtl(args ...string) error {
	args = append([]string{args[0], "-D", s.data}, args[1:]...)
	if out, err := asPostgres(filepath.Join(pgBin, "pg_ctl"), args...).CombinedOutput(); err != nil {
		return fmt.Errorf("pg_ctl %s %s: %w\n%s", args[0], s.name, err, out)
	}
	return nil
}

// asPostgres is a command run as the postgres user, which PostgreSQL's tools insist on.
func asPostgres(name string, args ...string) *exec.Cmd {
	cmd := exec.Command("runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
	cmd.Dir = "/"
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	return cmd
}

// reapPostgres stops the scratch servers hard, whether this run or an earlier one started them,
// and removes their directories. A postmaster pg_ctl cannot stop is killed by the process id in
// its pid file.
func reapPostgres(t *testing.T, servers ...*pgServer) {
	t.Helper()
	for _, s := range servers {
		pidFile := filepath.Join(s.data, "postmaster.pid")
		b, err := os.ReadFile(pidFile)
		if err != nil {
			continue
		}
		if err := s.pgCtl("stop", "-m", "immediate", "-w"); err == nil {
			continue
		}
		first, _, _ := bytes.Cut(b, []byte("\n"))
		if pid, err := strconv.Atoi(string(first)); err == nil && pid > 0 {
			if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && bytes.Contains(cmdline, []byte(s.data)) {
				t.Logf("killing the %s postmaster %d left running", s.name, pid)
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	if err := os.RemoveAll(pgBase); err != nil {
		t.Errorf("remove %s: %v", pgBase, err)
	}
}
