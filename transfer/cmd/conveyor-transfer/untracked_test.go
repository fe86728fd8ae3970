package main

import (
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// writeTracked writes the list the checkout writes (`git ls-files -z`).
func writeTracked(t *testing.T, names ...string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "tracked")
	if err := os.WriteFile(file, []byte(strings.Join(names, "\x00")+"\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// GitLab's untracked: every file git does not track, ignored ones included, never .git; a
// submodule is one tracked entry, so nothing in it is untracked; `exclude` still applies, and
// `paths` add to it.
func TestSelectUntracked(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"main.go": "tracked", "src/lib.go": "tracked", "src/gen.go": "made by the script",
		"build/out.bin": "gitignored", "debug.log": "excluded", ".git/HEAD": "git's",
		"sub/file": "in a submodule", "sub/.git": "gitdir: ...", "docs/readme.md": "tracked",
	})
	if err := os.Symlink("main.go", filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	tracked, err := ReadTracked(writeTracked(t, "main.go", "src/lib.go", "sub", "docs/readme.md"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Select(root, []string{"docs"}, []string{"*.log"}, tracked)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"build/out.bin", "docs", "docs/readme.md", "link", "src/gen.go"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Select = %v, want %v", got, want)
	}
	// Without untracked: only the paths.
	if got, _ := Select(root, []string{"docs"}, nil, nil); !reflect.DeepEqual(got, []string{"docs", "docs/readme.md"}) {
		t.Fatalf("Select without untracked = %v", got)
	}
	// An excluded folder brings none of its untracked files.
	if got, _ := Select(root, nil, []string{"build"}, tracked); reflect.DeepEqual(got, want) ||
		strings.Contains(strings.Join(got, ","), "build/") {
		t.Fatalf("an excluded folder's files were taken: %v", got)
	}
}

// No checkout (GIT_STRATEGY none, or no source): git tracks nothing, every file is untracked.
func TestEverythingIsUntrackedWithoutACheckout(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{"a": "1", "d/b": "2"})
	tracked, err := ReadTracked("")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := Select(root, nil, nil, tracked)
	if !reflect.DeepEqual(got, []string{"a", "d/b"}) {
		t.Fatalf("Select = %v", got)
	}
	empty, _ := ReadTracked(writeTracked(t))
	if got, _ := Select(root, nil, nil, empty); !reflect.DeepEqual(got, []string{"a", "d/b"}) {
		t.Fatalf("Select with an empty list = %v", got)
	}
}

// The checkout's list is missing where the plan says it is: the artifacts upload fails, saying
// so, rather than archive tracked files as untracked.
func TestAMissingTrackedListFailsTheArtifacts(t *testing.T) {
	s := &store{objects: map[string][]byte{}}
	srv := httptest.NewServer(s)
	defer srv.Close()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"made": "x"})
	plan := &Plan{ProjectDir: dir, TempDir: t.TempDir(), client: srv.Client(),
		TrackedFile: filepath.Join(t.TempDir(), "absent"),
		Artifacts:   &Artifacts{Untracked: true, URL: srv.URL + "/a", ManifestURL: srv.URL + "/m"}}
	err := Upload(plan, "success", io.Discard)
	if err == nil || !strings.Contains(err.Error(), "files git tracks") {
		t.Fatalf("got %v", err)
	}
	if len(s.objects) != 0 {
		t.Fatal("uploaded without the list of tracked files")
	}
}

// Untracked artifacts and an untracked cache reach the store and come back.
func TestUntrackedArtifactsAndCacheRoundTrip(t *testing.T) {
	s := &store{objects: map[string][]byte{}}
	srv := httptest.NewServer(s)
	defer srv.Close()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"tracked.txt": "t", "made.txt": "m", "ignored/x": "i"})
	plan := &Plan{ProjectDir: dir, TempDir: t.TempDir(), client: srv.Client(),
		TrackedFile: writeTracked(t, "tracked.txt"),
		Artifacts: &Artifacts{Untracked: true, When: "on_success", URL: srv.URL + "/a",
			ManifestURL: srv.URL + "/m"},
		Caches: []Cache{{Untracked: true, Push: &CacheKey{Key: "k", URL: srv.URL + "/c"}}}}
	if err := Upload(plan, "success", io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, object := range []string{"/a", "/c"} {
		out := t.TempDir()
		if _, _, found, err := fetch(&Plan{ProjectDir: out, client: srv.Client()}, srv.URL+object); err != nil || !found {
			t.Fatalf("%s: found %v, %v", object, found, err)
		}
		for name, want := range map[string]bool{"made.txt": true, "ignored/x": true, "tracked.txt": false} {
			_, err := os.Stat(filepath.Join(out, name))
			if (err == nil) != want {
				t.Fatalf("%s in %s: present %v, want %v", name, object, err == nil, want)
			}
		}
	}
}
