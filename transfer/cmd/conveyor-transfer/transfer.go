package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// Download fetches the dependencies' artifacts, then each cache's first key that exists, into
// the project directory.
func Download(p *Plan, out io.Writer) error {
	if len(p.Downloads) == 0 && len(p.Caches) == 0 {
		return nil // nothing to fetch: the project directory is left to the job to make
	}
	if err := os.MkdirAll(p.ProjectDir, 0o755); err != nil {
		return err
	}
	for _, d := range p.Downloads {
		fmt.Fprintf(out, "Downloading artifacts for %s...\n", d.Job)
		start := time.Now()
		n, size, found, err := fetchVerified(p, d.URL, d.SHA256)
		if err != nil {
			return fmt.Errorf("downloading the artifacts of job %s: %w", d.Job, err)
		}
		if !found {
			fmt.Fprintf(out, "WARNING: job %s has no artifacts in the store (none uploaded, or expired)\n", d.Job)
			continue
		}
		fmt.Fprintf(out, "Downloaded artifacts for %s: %d file(s), %d bytes%s\n", d.Job, n, size, rate(size, start))
	}
	for _, c := range p.Caches {
		pulled := false
		for _, k := range c.Pull {
			start := time.Now()
			n, size, found, err := fetch(p, k.URL)
			if err != nil {
				// A cache is an optimisation: GitLab's runner goes on without it.
				fmt.Fprintf(out, "WARNING: cache %s could not be read: %v\n", k.Key, err)
				continue
			}
			if found {
				fmt.Fprintf(out, "Cache %s restored: %d file(s), %d bytes%s\n", k.Key, n, size, rate(size, start))
				pulled = true
				break
			}
			fmt.Fprintf(out, "No cache for key %s\n", k.Key)
		}
		if !pulled && len(c.Pull) > 0 {
			fmt.Fprintln(out, "Failed to extract cache: none of its keys exists yet")
		}
	}
	return nil
}

// fetch downloads and extracts one archive: (files, archive bytes, found, error).
func fetch(p *Plan, url string) (int, int64, bool, error) {
	body, found, err := get(p, url)
	if err != nil || !found {
		return 0, 0, false, err
	}
	defer body.Close()
	counter := &countingReader{r: body}
	n, err := Extract(counter, p.ProjectDir)
	return n, counter.n, true, err
}

// get opens an object of the store: (body, found, error); a missing object is not an error.
func get(p *Plan, url string) (io.ReadCloser, bool, error) {
	resp, err := p.client.Get(url)
	if err != nil {
		return nil, false, fmt.Errorf("%s", redact(err.Error(), url))
	}
	if resp.StatusCode == http.StatusNotFound {
		resp.Body.Close()
		return nil, false, nil
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, false, fmt.Errorf("the store answered HTTP %d", resp.StatusCode)
	}
	return resp.Body, true, nil
}

// fetchVerified downloads an archive into the temporary directory, checks its sha256 against
// the digest the operator recorded when its job ended, and only then extracts it: an archive
// replaced in the store since is refused, and nothing of it reaches the project directory.
func fetchVerified(p *Plan, url, want string) (int, int64, bool, error) {
	body, found, err := get(p, url)
	if err != nil || !found {
		return 0, 0, false, err
	}
	defer body.Close()
	if err := os.MkdirAll(p.TempDir, 0o700); err != nil {
		return 0, 0, false, err
	}
	tmp, err := os.CreateTemp(p.TempDir, "download-*.tar.gz")
	if err != nil {
		return 0, 0, false, err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	hw, digest := newHashingWriter(tmp)
	if _, err := io.Copy(hw, body); err != nil {
		return 0, 0, false, err
	}
	if got := digest(); got != strings.ToLower(want) {
		return 0, 0, false, fmt.Errorf(
			"the archive in the store is not the one its job uploaded (sha256:%s, recorded sha256:%s): "+
				"nothing extracted", got, want)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return 0, 0, false, err
	}
	n, err := Extract(tmp, p.ProjectDir)
	return n, hw.size, true, err
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}

// rate says how long a transfer of size bytes took since start, and its throughput.
func rate(size int64, start time.Time) string {
	secs := time.Since(start).Seconds()
	if secs <= 0 {
		return ""
	}
	return fmt.Sprintf(" in %.2fs (%.1f MiB/s)", secs, float64(size)/secs/(1<<20))
}

// Upload sends the job's artifacts (when `when` says so), then its caches that push.
func Upload(p *Plan, status string, out io.Writer) error {
	if a := p.Artifacts; a != nil && when(a.When, status) {
		if err := uploadArtifacts(p, a, out); err != nil {
			return err
		}
	}
	for _, c := range p.Caches {
		if c.Push == nil || !when(c.When, status) {
			continue
		}
		var err error
		var untracked Tracked
		if c.Untracked {
			if untracked, err = ReadTracked(p.TrackedFile); err != nil {
				fmt.Fprintf(out, "WARNING: cache %s not saved: %v\n", c.Push.Key, err)
				continue
			}
		}
		names, err := Select(p.ProjectDir, c.Paths, nil, untracked)
		if err != nil {
			fmt.Fprintf(out, "WARNING: cache %s not saved: %v\n", c.Push.Key, err)
			continue
		}
		if len(names) == 0 {
			fmt.Fprintf(out, "WARNING: cache %s not saved: no file matches its paths\n", c.Push.Key)
			continue
		}
		fmt.Fprintf(out, "Saving cache for key %s...\n", c.Push.Key)
		start := time.Now()
		size, _, _, err := archiveAndPut(p, names, c.Push.URL, 0)
		if err != nil {
			fmt.Fprintf(out, "WARNING: cache %s not saved: %v\n", c.Push.Key, err)
			continue
		}
		fmt.Fprintf(out, "Created cache %s: %d bytes%s\n", c.Push.Key, size, rate(size, start))
	}
	return nil
}

func uploadArtifacts(p *Plan, a *Artifacts, out io.Writer) error {
	fmt.Fprintln(out, "Uploading artifacts...")
	var untracked Tracked
	if a.Untracked {
		var err error
		if untracked, err = ReadTracked(p.TrackedFile); err != nil {
			return fmt.Errorf("collecting the untracked files: %w", err)
		}
	}
	names, err := Select(p.ProjectDir, a.Paths, a.Exclude, untracked)
	if err != nil {
		return fmt.Errorf("collecting the artifacts: %w", err)
	}
	if len(names) == 0 {
		fmt.Fprintln(out, "WARNING: no file matches the artifacts' paths; nothing uploaded")
		return nil
	}
	start := time.Now()
	size, digest, files, err := archiveAndPut(p, names, a.URL, a.MaxBytes)
	if err != nil {
		return err
	}
	took := rate(size, start)
	manifest, _ := json.Marshal(Manifest{Name: a.Name, Size: size, SHA256: digest, Files: files})
	if err := put(p, a.ManifestURL, bytes.NewReader(manifest), int64(len(manifest))); err != nil {
		return fmt.Errorf("recording the artifacts: %w", err)
	}
	fmt.Fprintf(out, "Uploaded artifacts: %d file(s), %d bytes%s, sha256:%s\n", files, size, took, digest)
	return nil
}

// archiveAndPut writes the archive to a temporary file (S3 wants its length first), refuses it
// over maxBytes (0: no limit), and PUTs it.
func archiveAndPut(p *Plan, names []string, url string, maxBytes int64) (int64, string, int, error) {
	if err := os.MkdirAll(p.TempDir, 0o700); err != nil {
		return 0, "", 0, err
	}
	tmp, err := os.CreateTemp(p.TempDir, "archive-*.tar.gz")
	if err != nil {
		return 0, "", 0, err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	hw, digest := newHashingWriter(tmp)
	files, err := WriteArchive(hw, p.ProjectDir, names)
	if err != nil {
		return 0, "", 0, fmt.Errorf("archiving: %w", err)
	}
	if maxBytes > 0 && hw.size > maxBytes {
		return 0, "", 0, fmt.Errorf(
			"the artifacts archive is %d bytes, over the limit of %d bytes: nothing uploaded",
			hw.size, maxBytes)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return 0, "", 0, err
	}
	if err := put(p, url, tmp, hw.size); err != nil {
		return 0, "", 0, fmt.Errorf("uploading: %w", err)
	}
	return hw.size, digest(), files, nil
}

func put(p *Plan, url string, body io.Reader, size int64) error {
	req, err := http.NewRequest(http.MethodPut, url, body)
	if err != nil {
		return fmt.Errorf("%s", redact(err.Error(), url))
	}
	req.ContentLength = size
	if size == 0 {
		req.Body = http.NoBody
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s", redact(err.Error(), url))
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("the store answered HTTP %d %s", resp.StatusCode, bytes.TrimSpace(msg))
	}
	return nil
}

// redact keeps presigned URLs (bearer credentials until they expire) out of logs.
func redact(msg, url string) string {
	return string(bytes.ReplaceAll([]byte(msg), []byte(url), []byte("<presigned URL>")))
}
