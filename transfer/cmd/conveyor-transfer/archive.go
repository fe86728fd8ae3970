package main

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// Match says whether a slash-separated relative path matches a GitLab artifacts pattern:
// path.Match per segment, and `**` for any number of segments (GitLab's doublestar globs).
func Match(pattern, name string) bool {
	pattern = strings.TrimPrefix(path.Clean(strings.TrimPrefix(pattern, "./")), "/")
	return matchSegments(strings.Split(pattern, "/"), strings.Split(name, "/"))
}

func matchSegments(pat, name []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			for i := 0; i <= len(name); i++ {
				if matchSegments(pat[1:], name[i:]) {
					return true
				}
			}
			return false
		}
		if len(name) == 0 {
			return false
		}
		if ok, err := path.Match(pat[0], name[0]); err != nil || !ok {
			return false
		}
		pat, name = pat[1:], name[1:]
	}
	return len(name) == 0
}

// Select lists the files, directories and symlinks under root that the patterns take (a
// matched directory brings everything under it), minus those an exclude pattern matches. With
// untracked (not nil), every file (or symlink) git does not track is taken too, ignored ones
// included, never the repository's own .git: GitLab's `untracked: true`.
func Select(root string, include, exclude []string, untracked Tracked) ([]string, error) {
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		if matchesAny(exclude, rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if matchesAny(include, rel) || underMatch(include, rel) {
			out = append(out, rel)
		} else if untracked != nil && rel != ".git" && !strings.HasPrefix(rel, ".git/") &&
			!d.IsDir() && !untracked.tracks(rel) {
			out = append(out, rel)
		}
		return nil
	})
	sort.Strings(out)
	return out, err
}

// Tracked is the set of paths git tracks in the project directory. Not nil, even empty: the
// untracked files are wanted.
type Tracked map[string]bool

// ReadTracked reads the list the checkout wrote (`git ls-files -z`); file "": nothing was
// checked out, git tracks nothing.
func ReadTracked(file string) (Tracked, error) {
	t := Tracked{}
	if file == "" {
		return t, nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("the list of the files git tracks, written by the checkout: %w", err)
	}
	for _, name := range strings.Split(string(data), "\x00") {
		if name != "" {
			t[name] = true
		}
	}
	return t, nil
}

// tracks: git tracks rel, or a folder above it (a submodule is one entry of git ls-files, and
// git ls-files --others lists nothing inside it).
func (t Tracked) tracks(rel string) bool {
	for p := rel; p != "." && p != "/" && p != ""; p = path.Dir(p) {
		if t[p] {
			return true
		}
	}
	return false
}

func matchesAny(patterns []string, rel string) bool {
	for _, p := range patterns {
		if Match(p, rel) {
			return true
		}
	}
	return false
}

// underMatch: rel is inside a directory a pattern matched.
func underMatch(patterns []string, rel string) bool {
	for dir := path.Dir(rel); dir != "."; dir = path.Dir(dir) {
		if matchesAny(patterns, dir) {
			return true
		}
	}
	return false
}

// WriteArchive writes root's files `names` as a gzipped tar to w; it returns the number of
// regular files.
func WriteArchive(w io.Writer, root string, names []string) (int, error) {
	gz, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
	tw := tar.NewWriter(gz)
	files := 0
	for _, name := range names {
		full := filepath.Join(root, filepath.FromSlash(name))
		info, err := os.Lstat(full)
		if err != nil {
			return files, err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(full); err != nil {
				return files, err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return files, err
		}
		hdr.Name = name
		hdr.Uname, hdr.Gname = "", ""
		if info.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return files, err
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(full)
			if err != nil {
				return files, err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			if err != nil {
				return files, err
			}
			files++
		}
	}
	if err := tw.Close(); err != nil {
		return files, err
	}
	return files, gz.Close()
}

// Extract unpacks a gzipped tar into root, refusing any entry that would land outside it.
func Extract(r io.Reader, root string) (int, error) {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return 0, fmt.Errorf("not a gzipped archive: %w", err)
	}
	tr := tar.NewReader(gz)
	files := 0
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return files, nil
		}
		if err != nil {
			return files, err
		}
		name := path.Clean(hdr.Name)
		if path.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return files, fmt.Errorf("archive entry %q is outside the project directory", hdr.Name)
		}
		target := filepath.Join(root, filepath.FromSlash(name))
		// Directories open to every user (with the init container's umask 0000, as GitLab's
		// helper): a job image running as another user adds and replaces files in them.
		if err := os.MkdirAll(filepath.Dir(target), 0o777); err != nil {
			return files, err
		}
		if err := insideNoSymlink(root, filepath.Dir(target)); err != nil {
			return files, err
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o777); err != nil {
				return files, err
			}
		case tar.TypeSymlink:
			_ = os.Remove(target)
			if err := os.Symlink(hdr.Linkname, target); err != nil {
				return files, err
			}
		case tar.TypeReg:
			_ = os.Remove(target) // never write through a symlink already there
			f, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, hdr.FileInfo().Mode().Perm())
			if err != nil {
				return files, err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return files, err
			}
			files++
		}
	}
}

// insideNoSymlink: dir, resolved, is still under root (an archive's symlink cannot carry later
// entries out of the project directory).
func insideNoSymlink(root, dir string) error {
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return err
	}
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return err
	}
	if realDir != realRoot && !strings.HasPrefix(realDir, realRoot+string(filepath.Separator)) {
		return fmt.Errorf("archive entry under %s leads outside the project directory", dir)
	}
	return nil
}

// hashingWriter counts and hashes what passes through.
type hashingWriter struct {
	w    io.Writer
	h    io.Writer
	size int64
}

func (h *hashingWriter) Write(p []byte) (int, error) {
	n, err := h.w.Write(p)
	h.h.Write(p[:n])
	h.size += int64(n)
	return n, err
}

func newHashingWriter(w io.Writer) (*hashingWriter, func() string) {
	sum := sha256.New()
	hw := &hashingWriter{w: w, h: sum}
	return hw, func() string { return hex.EncodeToString(sum.Sum(nil)) }
}
