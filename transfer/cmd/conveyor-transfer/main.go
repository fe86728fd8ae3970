// Command conveyor-transfer moves a job's artifacts and caches between its pod and the artifact
// store, with nothing assumed of the job's image (no tar, curl or shell): it is static, and an
// init container copies it into the pod (as Tekton delivers its entrypoint binary).
//
//	conveyor-transfer init DIR        copy this binary to DIR, then download the dependencies'
//	                                  artifacts and the caches (the init container)
//	conveyor-transfer upload STATUS   artifacts and caches after the script (STATUS: success
//	                                  or failed, for `when`)
//	conveyor-transfer wait-services SECONDS NAME=PORT...
//	                                  wait until the services listen (GitLab's
//	                                  HEALTHCHECK_TCP_PORT), warning about those that do not
//
// The plan is the JSON the operator wrote for this job attempt, in the file
// $CONVEYOR_TRANSFER_PLAN_FILE (a Secret's, mounted): presigned URLs for exactly this attempt's
// objects, expiring with the job, and the sha256 of each archive it downloads. The binary holds
// no store credentials.
package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// MessagePrefix starts the termination message of a failed transfer; the operator reads it as
// the reason the job failed (kube/observe.py).
const MessagePrefix = "conveyor: artifacts: "

// PlanVariable names the file holding the plan (JSON).
const PlanVariable = "CONVEYOR_TRANSFER_PLAN_FILE"

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		msg := err.Error()
		fmt.Fprintf(os.Stderr, "ERROR: %s\n", msg)
		path := os.Getenv("CONVEYOR_TERMINATION_LOG")
		if path == "" {
			path = "/dev/termination-log"
		}
		_ = os.WriteFile(path, []byte(MessagePrefix+msg), 0o644)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	if len(args) < 2 {
		return fmt.Errorf("usage: conveyor-transfer init DIR | upload STATUS | " +
			"wait-services SECONDS NAME=PORT...")
	}
	switch args[0] {
	case "wait-services":
		seconds, err := strconv.Atoi(args[1])
		if err != nil || seconds < 1 {
			return fmt.Errorf("wait-services: not a number of seconds: %q", args[1])
		}
		services, err := parseServices(args[2:])
		if err != nil {
			return fmt.Errorf("wait-services: %w", err)
		}
		waitForServices(services, time.Duration(seconds)*time.Second, out)
		return nil
	case "install":
		return install(args[1])
	case "init":
		// GitLab's helper extracts under umask 0000 (Kubernetes executor): this init container
		// runs as root, and a job image that runs as another user must be able to add and
		// replace files in the directories it extracts.
		syscall.Umask(0)
		if err := install(args[1]); err != nil {
			return fmt.Errorf("installing the transfer binary: %w", err)
		}
		plan, err := ReadPlan()
		if err != nil {
			return err
		}
		return Download(plan, out)
	case "upload":
		plan, err := ReadPlan()
		if err != nil {
			return err
		}
		return Upload(plan, args[1], out)
	}
	return fmt.Errorf("unknown command %q", args[0])
}
func install(dir string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	src, err := os.Open(self)
	if err != nil {
		return err
	}
	defer src.Close()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	dest := filepath.Join(dir, "conveyor-transfer")
	tmp := dest + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, src); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, dest)
}

// when says whether an upload with GitLab's `when` (on_success, on_failure, always) happens for
// a job that ended with status.
func when(w, status string) bool {
	switch strings.ToLower(w) {
	case "always":
		return true
	case "on_failure":
		return status != "success"
	default:
		return status == "success"
	}
}
