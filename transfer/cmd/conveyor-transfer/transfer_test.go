package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
)

func TestMatch(t *testing.T) {
	cases := []struct {
		pattern, name string
		want          bool
	}{
		{"bin", "bin", true},
		{"bin/", "bin", true},
		{"./bin/app", "bin/app", true},
		{"*.txt", "a.txt", true},
		{"*.txt", "d/a.txt", false},
		{"**/*.txt", "d/e/a.txt", true},
		{"**/*.txt", "a.txt", true},
		{"d/**", "d/e/f", true},
		{"d/*", "d/e/f", false},
	}
	for _, c := range cases {
		if got := Match(c.pattern, c.name); got != c.want {
			t.Errorf("Match(%q, %q) = %v, want %v", c.pattern, c.name, got, c.want)
		}
	}
}

func writeFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSelectIncludesDirectoriesAndExcludes(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"bin/app": "x", "bin/debug.log": "y", "src/main.go": "z", "out/report.xml": "r",
	})
	got, err := Select(root, []string{"bin", "out/*.xml"}, []string{"**/*.log"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"bin", "bin/app", "out/report.xml"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Select = %v, want %v", got, want)
	}
}

func TestArchiveRoundTrip(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	writeFiles(t, src, map[string]string{"a/b.txt": "hello", "c": "world"})
	names, _ := Select(src, []string{"a", "c"}, nil, nil)
	var buf bytes.Buffer
	if n, err := WriteArchive(&buf, src, names); err != nil || n != 2 {
		t.Fatalf("WriteArchive: %d, %v", n, err)
	}
	if n, err := Extract(&buf, dst); err != nil || n != 2 {
		t.Fatalf("Extract: %d, %v", n, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "a/b.txt")); string(b) != "hello" {
		t.Fatalf("a/b.txt = %q", b)
	}
}

// As GitLab's helper under umask 0000: the directories extracted are open to a job image that
// runs as another user; files keep the mode they were archived with.
func TestExtractOpensDirectoriesUnderUmaskZero(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	src, dst := t.TempDir(), t.TempDir()
	writeFiles(t, src, map[string]string{"out/deep/app.txt": "built"})
	if err := os.Chmod(filepath.Join(src, "out/deep/app.txt"), 0o644); err != nil {
		t.Fatal(err)
	}
	names, _ := Select(src, []string{"out"}, nil, nil)
	var buf bytes.Buffer
	if _, err := WriteArchive(&buf, src, names); err != nil {
		t.Fatal(err)
	}
	if _, err := Extract(&buf, dst); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"out", "out/deep"} {
		info, err := os.Stat(filepath.Join(dst, dir))
		if err != nil || info.Mode().Perm() != 0o777 {
			t.Fatalf("%s: %v, %v", dir, info.Mode(), err)
		}
	}
	if info, _ := os.Stat(filepath.Join(dst, "out/deep/app.txt")); info.Mode().Perm() != 0o644 {
		t.Fatalf("app.txt mode %v", info.Mode())
	}
}

func TestExtractRefusesEntriesOutside(t *testing.T) {
	// A symlink to / followed by a file under it: the file must not land outside.
	src, dst, outside := t.TempDir(), t.TempDir(), t.TempDir()
	if err := os.Symlink(outside, filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	writeFiles(t, src, map[string]string{"x/evil": "boom"})
	var buf bytes.Buffer
	if _, err := WriteArchive(&buf, src, []string{"link"}); err != nil {
		t.Fatal(err)
	}
	if _, err := Extract(&buf, dst); err != nil {
		t.Fatal(err)
	}
	// Now an archive whose entry is link/evil.
	var evil bytes.Buffer
	tmp := t.TempDir()
	writeFiles(t, tmp, map[string]string{"link/evil": "boom"})
	if _, err := WriteArchive(&evil, tmp, []string{"link/evil"}); err != nil {
		t.Fatal(err)
	}
	if _, err := Extract(&evil, dst); err == nil {
		t.Fatal("an entry through a symlink out of the directory was extracted")
	}
	if _, err := os.Stat(filepath.Join(outside, "evil")); err == nil {
		t.Fatal("a file was written outside the project directory")
	}
}

// store is an in-memory S3 stand-in for the HTTP side only (PUT/GET by path).
type store struct {
	mu      sync.Mutex
	objects map[string][]byte
}

func (s *store) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch r.Method {
	case http.MethodPut:
		if r.ContentLength < 0 {
			http.Error(w, "length required", http.StatusLengthRequired)
			return
		}
		b, _ := io.ReadAll(r.Body)
		s.objects[r.URL.Path] = b
	case http.MethodGet:
		b, ok := s.objects[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}
}

func TestUploadThenDownload(t *testing.T) {
	s := &store{objects: map[string][]byte{}}
	srv := httptest.NewServer(s)
	defer srv.Close()
	build, next := t.TempDir(), t.TempDir()
	writeFiles(t, build, map[string]string{"bin/app": "binary", "notes.txt": "no"})
	plan := &Plan{ProjectDir: build, TempDir: t.TempDir(), client: srv.Client(),
		Artifacts: &Artifacts{Paths: []string{"bin"}, URL: srv.URL + "/a.tgz",
			ManifestURL: srv.URL + "/a.json"}}
	var out bytes.Buffer
	if err := Upload(plan, "success", &out); err != nil {
		t.Fatal(err)
	}
	var m Manifest
	if err := json.Unmarshal(s.objects["/a.json"], &m); err != nil || m.Files != 1 ||
		m.Size != int64(len(s.objects["/a.tgz"])) {
		t.Fatalf("manifest %+v (%v)", m, err)
	}
	down := &Plan{ProjectDir: next, TempDir: t.TempDir(), client: srv.Client(),
		Downloads: []Dependency{{Job: "build", URL: srv.URL + "/a.tgz", SHA256: m.SHA256},
			{Job: "none", URL: srv.URL + "/missing", SHA256: m.SHA256}}}
	if err := Download(down, &out); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(next, "bin/app")); string(b) != "binary" {
		t.Fatalf("bin/app = %q", b)
	}
	if _, err := os.Stat(filepath.Join(next, "notes.txt")); err == nil {
		t.Fatal("a file outside the artifacts' paths was uploaded")
	}
}

// An archive replaced in the store after its job recorded it is refused, and nothing of it is
// extracted: what a later (approved) job gets is what the earlier job uploaded.
func TestDownloadRefusesAnArchiveReplacedSinceItsRecord(t *testing.T) {
	s := &store{objects: map[string][]byte{}}
	srv := httptest.NewServer(s)
	defer srv.Close()
	build, evil, next := t.TempDir(), t.TempDir(), t.TempDir()
	writeFiles(t, build, map[string]string{"app": "built"})
	writeFiles(t, evil, map[string]string{"app": "replaced", "extra": "planted"})
	var out bytes.Buffer
	up := &Plan{ProjectDir: build, TempDir: t.TempDir(), client: srv.Client(),
		Artifacts: &Artifacts{Paths: []string{"app"}, URL: srv.URL + "/a.tgz",
			ManifestURL: srv.URL + "/a.json"}}
	if err := Upload(up, "success", &out); err != nil {
		t.Fatal(err)
	}
	var m Manifest
	if err := json.Unmarshal(s.objects["/a.json"], &m); err != nil {
		t.Fatal(err)
	}
	var replaced bytes.Buffer
	if _, err := WriteArchive(&replaced, evil, []string{"app", "extra"}); err != nil {
		t.Fatal(err)
	}
	s.objects["/a.tgz"] = replaced.Bytes()
	down := &Plan{ProjectDir: next, TempDir: t.TempDir(), client: srv.Client(),
		Downloads: []Dependency{{Job: "build", URL: srv.URL + "/a.tgz", SHA256: m.SHA256}}}
	err := Download(down, &out)
	if err == nil || !strings.Contains(err.Error(), "not the one its job uploaded") {
		t.Fatalf("a replaced archive was accepted: %v", err)
	}
	for _, name := range []string{"app", "extra"} {
		if _, err := os.Stat(filepath.Join(next, name)); err == nil {
			t.Fatalf("%s of the replaced archive was extracted", name)
		}
	}
}

func TestAPlanWithoutADownloadsDigestIsRefused(t *testing.T) {
	_, err := ParsePlan(`{"projectDir":"/b","downloads":[{"job":"build","url":"http://x/a"}]}`)
	if err == nil || !strings.Contains(err.Error(), "no sha256 for the artifacts of job build") {
		t.Fatalf("got %v", err)
	}
}

func TestThePlanIsReadFromItsFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "plan.json")
	if err := os.WriteFile(file, []byte(`{"projectDir":"/b"}`), 0o400); err != nil {
		t.Fatal(err)
	}
	t.Setenv(PlanVariable, file)
	p, err := ReadPlan()
	if err != nil || p.ProjectDir != "/b" {
		t.Fatalf("plan %+v, %v", p, err)
	}
	t.Setenv(PlanVariable, filepath.Join(t.TempDir(), "absent"))
	if _, err := ReadPlan(); err == nil || !strings.Contains(err.Error(), "no transfer plan") {
		t.Fatalf("a missing plan file: %v", err)
	}
}

func TestWhenAndLimit(t *testing.T) {
	s := &store{objects: map[string][]byte{}}
	srv := httptest.NewServer(s)
	defer srv.Close()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"big": strings.Repeat("x", 1<<16)})
	plan := &Plan{ProjectDir: dir, TempDir: t.TempDir(), client: srv.Client(),
		Artifacts: &Artifacts{Paths: []string{"big"}, URL: srv.URL + "/a", ManifestURL: srv.URL + "/m"}}
	// on_success (the default) uploads nothing for a failed job.
	if err := Upload(plan, "failed", io.Discard); err != nil || len(s.objects) != 0 {
		t.Fatalf("uploaded for a failed job: %v %v", err, s.objects)
	}
	plan.Artifacts.MaxBytes = 10
	err := Upload(plan, "success", io.Discard)
	if err == nil || !strings.Contains(err.Error(), "over the limit of 10 bytes") {
		t.Fatalf("over the limit: %v", err)
	}
	if len(s.objects) != 0 {
		t.Fatal("an archive over the limit was uploaded")
	}
}

func TestCacheFallbackAndPolicy(t *testing.T) {
	s := &store{objects: map[string][]byte{}}
	srv := httptest.NewServer(s)
	defer srv.Close()
	dir, next := t.TempDir(), t.TempDir()
	writeFiles(t, dir, map[string]string{"deps/lib": "cached"})
	push := &Plan{ProjectDir: dir, TempDir: t.TempDir(), client: srv.Client(),
		Caches: []Cache{{Paths: []string{"deps"}, Push: &CacheKey{Key: "fallback", URL: srv.URL + "/c/fallback"}}}}
	if err := Upload(push, "success", io.Discard); err != nil {
		t.Fatal(err)
	}
	pull := &Plan{ProjectDir: next, client: srv.Client(), Caches: []Cache{{Paths: []string{"deps"},
		Pull: []CacheKey{{Key: "main", URL: srv.URL + "/c/main"}, {Key: "fallback", URL: srv.URL + "/c/fallback"}}}}}
	var out bytes.Buffer
	if err := Download(pull, &out); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(next, "deps/lib")); string(b) != "cached" {
		t.Fatalf("the fallback key's cache was not restored: %s", out.String())
	}
}
