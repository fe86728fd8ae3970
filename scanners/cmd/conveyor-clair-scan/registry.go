package main

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// Reference is a parsed image name: registry host, repository, tag and/or digest.
type Reference struct {
	Host, Repository, Tag, Digest string
}

// ParseReference reads an image reference as Docker does: a first component with a dot, a
// colon or `localhost` is a registry host, else the image is Docker Hub's (library/ for
// one-word names); no tag and no digest means `latest`.
func ParseReference(s string) (Reference, error) {
	var r Reference
	if s == "" || strings.ContainsAny(s, " \t\n") {
		return r, fmt.Errorf("invalid image reference %q", s)
	}
	name := s
	if i := strings.Index(name, "@"); i >= 0 {
		name, r.Digest = name[:i], name[i+1:]
		if !strings.HasPrefix(r.Digest, "sha256:") || len(r.Digest) != 71 {
			return r, fmt.Errorf("invalid digest in image reference %q", s)
		}
	}
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		name, r.Tag = name[:i], name[i+1:]
	}
	first, rest, found := strings.Cut(name, "/")
	if found && (strings.ContainsAny(first, ".:") || first == "localhost") {
		r.Host, name = first, rest
	} else {
		r.Host = "docker.io"
		if !found {
			name = "library/" + name
		}
	}
	if name == "" {
		return r, fmt.Errorf("invalid image reference %q", s)
	}
	r.Repository = name
	if r.Tag == "" && r.Digest == "" {
		r.Tag = "latest"
	}
	return r, nil
}

func (r Reference) String() string {
	s := r.Host + "/" + r.Repository
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + r.Digest
	}
	return s
}

// Registry speaks the distribution API to one registry host, with credentials from a Docker
// config.json when one is given.
type Registry struct {
	Host    string
	Scheme  string // https, or http for a registry that answers plain HTTP
	Client  *http.Client
	Headers http.Header // authorization, also given to Clair to fetch the layers
}

func apiHost(host string) string {
	if host == "docker.io" {
		return "registry-1.docker.io"
	}
	return host
}

// Basic credentials for host from $DOCKER_CONFIG/config.json, if any.
func credentials(host string) (string, error) {
	dir := os.Getenv("DOCKER_CONFIG")
	if dir == "" {
		return "", nil
	}
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	} else if err != nil {
		return "", err
	}
	var cfg struct {
		Auths map[string]struct {
			Auth     string `json:"auth"`
			Username string `json:"username"`
			Password string `json:"password"`
		} `json:"auths"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return "", fmt.Errorf("reading the registry credentials: %w", err)
	}
	for _, key := range []string{host, "https://" + host, "http://" + host, "https://index.docker.io/v1/"} {
		if a, ok := cfg.Auths[key]; ok {
			if a.Auth != "" {
				return a.Auth, nil
			}
			return base64.StdEncoding.EncodeToString([]byte(a.Username + ":" + a.Password)), nil
		}
	}
	return "", nil
}

// NewRegistry finds whether host answers HTTPS or plain HTTP (a local registry) and reads
// its credentials.
func NewRegistry(client *http.Client, host string) (*Registry, error) {
	r := &Registry{Host: apiHost(host), Scheme: "https", Client: client, Headers: http.Header{}}
	auth, err := credentials(host)
	if err != nil {
		return nil, err
	}
	if auth != "" {
		r.Headers.Set("Authorization", "Basic "+auth)
	}
	res, err := r.get("/v2/", "")
	if err != nil && strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
		r.Scheme = "http"
		res, err = r.get("/v2/", "")
	}
	if err != nil {
		return nil, fmt.Errorf("registry %s: %w", host, err)
	}
	res.Body.Close()
	if res.StatusCode == http.StatusUnauthorized {
		return nil, fmt.Errorf("registry %s: unauthorized (%s)", host, res.Header.Get("WWW-Authenticate"))
	}
	return r, nil
}

func (r *Registry) url(path string) string {
	return r.Scheme + "://" + r.Host + path
}

func (r *Registry) get(path, accept string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodGet, r.url(path), nil)
	if err != nil {
		return nil, err
	}
	for k, v := range r.Headers {
		req.Header[k] = v
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	return r.Client.Do(req)
}

const (
	mediaOCIIndex      = "application/vnd.oci.image.index.v1+json"
	mediaOCIManifest   = "application/vnd.oci.image.manifest.v1+json"
	mediaDockerList    = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaDockerV2      = "application/vnd.docker.distribution.manifest.v2+json"
	acceptAllManifests = mediaOCIIndex + ", " + mediaOCIManifest + ", " + mediaDockerList + ", " + mediaDockerV2
)

type descriptor struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
	Platform  *struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
	} `json:"platform,omitempty"`
}

type manifest struct {
	MediaType string       `json:"mediaType"`
	Manifests []descriptor `json:"manifests"` // an index
	Layers    []descriptor `json:"layers"`    // an image
}

// Image is one platform's manifest: its digest and its layers.
type Image struct {
	Digest string
	Layers []descriptor
}

func (r *Registry) manifest(repo, ref string) (manifest, string, error) {
	var m manifest
	res, err := r.get("/v2/"+repo+"/manifests/"+ref, acceptAllManifests)
	if err != nil {
		return m, "", err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 4<<20))
	if err != nil {
		return m, "", err
	}
	if res.StatusCode != http.StatusOK {
		return m, "", fmt.Errorf("manifest %s@%s: %s", repo, ref, res.Status)
	}
	sum := sha256.Sum256(body)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	if strings.HasPrefix(ref, "sha256:") && ref != digest {
		return m, "", fmt.Errorf("manifest %s@%s: the registry served content of digest %s", repo, ref, digest)
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return m, "", fmt.Errorf("manifest %s@%s: %w", repo, ref, err)
	}
	if m.MediaType == "" {
		m.MediaType = res.Header.Get("Content-Type")
	}
	return m, digest, nil
}

// Resolve finds the manifest of ref for this machine's platform (linux/amd64 here), following
// an index or manifest list.
func (r *Registry) Resolve(ref Reference) (Image, error) {
	tagOrDigest := ref.Digest
	if tagOrDigest == "" {
		tagOrDigest = ref.Tag
	}
	m, digest, err := r.manifest(ref.Repository, tagOrDigest)
	if err != nil {
		return Image{}, err
	}
	if len(m.Manifests) > 0 {
		var chosen string
		for _, d := range m.Manifests {
			if d.Platform == nil || (d.Platform.OS == "linux" && d.Platform.Architecture == runtime.GOARCH) {
				chosen = d.Digest
				break
			}
		}
		if chosen == "" {
			return Image{}, fmt.Errorf("%s has no linux/%s image", ref, runtime.GOARCH)
		}
		if m, digest, err = r.manifest(ref.Repository, chosen); err != nil {
			return Image{}, err
		}
	}
	if len(m.Layers) == 0 {
		return Image{}, fmt.Errorf("%s: the manifest has no layers", ref)
	}
	return Image{Digest: digest, Layers: m.Layers}, nil
}

// BlobURL is where Clair fetches a layer.
func (r *Registry) BlobURL(repo, digest string) string {
	return r.url("/v2/" + repo + "/blobs/" + digest)
}
