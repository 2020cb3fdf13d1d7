// Command refdiff says how Docker's own reference package reads image
// references, so that the test suite can compare puller's parser with it.
//
// Each stdin line is a JSON value: a string is a reference, parsed as dockerd
// parses an image name (reference.ParseNormalizedNamed); an object
// {"image": ..., "tag": ...} is a pull request's pair, combined as dockerd's
// PullImage does (a tag that parses as a digest pins it, else it is a tag).
// Each input gives one JSON line on stdout: {"error": "..."} or
// {"domain", "path", "tag", "digest"}. With -raw, stdin lines are plain
// references instead (for a person trying one by hand).
//
// Built offline in GOPATH mode against Debian's golang-github-docker-distribution-dev
// (see tests/integration/test_reference_docker.py).
package main

import (
	"bufio"
	// dockerd links SHA-256 and SHA-512 in; go-digest accepts exactly the
	// algorithms whose hash is linked, so without these it would refuse all.
	_ "crypto/sha256"
	_ "crypto/sha512"
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/docker/distribution/reference"
	"github.com/docker/distribution/version"
	digest "github.com/opencontainers/go-digest"
)

type pair struct {
	Image string `json:"image"`
	Tag   string `json:"tag"`
}

type split struct {
	Domain string `json:"domain"`
	Path   string `json:"path"`
	Tag    string `json:"tag"`
	Digest string `json:"digest"`
}

type failure struct {
	Error string `json:"error"`
}

// pullReference is daemon/images.(*ImageService).PullImage's reading of the
// image and tag query parameters (Docker 20.10).
func pullReference(image, tag string) (reference.Named, error) {
	ref, err := reference.ParseNormalizedNamed(image)
	if err != nil || tag == "" {
		return ref, err
	}
	if dgst, derr := digest.Parse(tag); derr == nil {
		return reference.WithDigest(reference.TrimNamed(ref), dgst)
	}
	return reference.WithTag(ref, tag)
}

func describe(named reference.Named, err error) interface{} {
	if err != nil {
		return failure{err.Error()}
	}
	out := split{Domain: reference.Domain(named), Path: reference.Path(named)}
	if tagged, ok := named.(reference.Tagged); ok {
		out.Tag = tagged.Tag()
	}
	if digested, ok := named.(reference.Digested); ok {
		out.Digest = digested.Digest().String()
	}
	return out
}

func main() {
	raw := flag.Bool("raw", false, "stdin lines are plain references, not JSON")
	showVersion := flag.Bool("version", false, "print the distribution version compared against, and exit")
	flag.Parse()
	if *showVersion {
		fmt.Println(version.Version)
		return
	}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<24)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	for in.Scan() {
		line := in.Bytes()
		var res interface{}
		switch {
		case *raw:
			res = describe(reference.ParseNormalizedNamed(string(line)))
		case len(line) > 0 && line[0] == '{':
			var p pair
			if err := json.Unmarshal(line, &p); err != nil {
				fmt.Fprintln(os.Stderr, "refdiff: bad input line:", err)
				os.Exit(2)
			}
			res = describe(pullReference(p.Image, p.Tag))
		default:
			var s string
			if err := json.Unmarshal(line, &s); err != nil {
				fmt.Fprintln(os.Stderr, "refdiff: bad input line:", err)
				os.Exit(2)
			}
			res = describe(reference.ParseNormalizedNamed(s))
		}
		if err := enc.Encode(res); err != nil {
			fmt.Fprintln(os.Stderr, "refdiff:", err)
			os.Exit(1)
		}
	}
	if err := in.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "refdiff:", err)
		os.Exit(1)
	}
}
