// The RFC 6962 / RFC 9162 reference for CLAIIM's Merkle code: github.com/transparency-dev/merkle,
// the implementation Certificate Transparency and Sigstore use. It reads one JSON request on
// stdin, and writes what the reference computes for it on stdout:
//
//	in:  {"leaves": [hex record hashes], "roots": [size], "inclusion": [[index, size]],
//	      "consistency": [[size1, size2]],
//	      "check_inclusion": [{"index", "size", "leaf", "proof", "root"}],
//	      "check_consistency": [{"size1", "size2", "proof", "root1", "root2"}]}
//	out: {"roots": [hex], "inclusion": [[hex]], "consistency": [[hex]],
//	      "check_inclusion": [bool], "check_consistency": [bool]}
//
// A leaf is a Chron record hash (32 bytes): its leaf hash is SHA-256(0x00 || record hash).
package main

import (
	"crypto"
	_ "crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
)

type inclusionCheck struct {
	Index uint64   `json:"index"`
	Size  uint64   `json:"size"`
	Leaf  string   `json:"leaf"`
	Proof []string `json:"proof"`
	Root  string   `json:"root"`
}

type consistencyCheck struct {
	Size1 uint64   `json:"size1"`
	Size2 uint64   `json:"size2"`
	Proof []string `json:"proof"`
	Root1 string   `json:"root1"`
	Root2 string   `json:"root2"`
}

type request struct {
	Leaves           []string           `json:"leaves"`
	Roots            []uint64           `json:"roots"`
	Inclusion        [][2]uint64        `json:"inclusion"`
	Consistency      [][2]uint64        `json:"consistency"`
	CheckInclusion   []inclusionCheck   `json:"check_inclusion"`
	CheckConsistency []consistencyCheck `json:"check_consistency"`
}

type response struct {
	Roots            []string   `json:"roots"`
	Inclusion        [][]string `json:"inclusion"`
	Consistency      [][]string `json:"consistency"`
	CheckInclusion   []bool     `json:"check_inclusion"`
	CheckConsistency []bool     `json:"check_consistency"`
}

func decode(h string) []byte {
	b, err := hex.DecodeString(h)
	if err != nil {
		fail(err)
	}
	return b
}

func decodeAll(hs []string) [][]byte {
	out := make([][]byte, len(hs))
	for i, h := range hs {
		out[i] = decode(h)
	}
	return out
}

func encodeAll(bs [][]byte) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = hex.EncodeToString(b)
	}
	return out
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

func main() {
	var req request
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		fail(err)
	}
	hasher := rfc6962.New(crypto.SHA256)
	tree := testonly.New(hasher)
	for _, leaf := range req.Leaves {
		tree.AppendData(decode(leaf))
	}
	res := response{Roots: []string{}, Inclusion: [][]string{}, Consistency: [][]string{}, CheckInclusion: []bool{}, CheckConsistency: []bool{}}
	for _, size := range req.Roots {
		res.Roots = append(res.Roots, hex.EncodeToString(tree.HashAt(size)))
	}
	for _, q := range req.Inclusion {
		p, err := tree.InclusionProof(q[0], q[1])
		if err != nil {
			fail(err)
		}
		res.Inclusion = append(res.Inclusion, encodeAll(p))
	}
	for _, q := range req.Consistency {
		p, err := tree.ConsistencyProof(q[0], q[1])
		if err != nil {
			fail(err)
		}
		res.Consistency = append(res.Consistency, encodeAll(p))
	}
	for _, c := range req.CheckInclusion {
		err := proof.VerifyInclusion(hasher, c.Index, c.Size, hasher.HashLeaf(decode(c.Leaf)), decodeAll(c.Proof), decode(c.Root))
		res.CheckInclusion = append(res.CheckInclusion, err == nil)
	}
	for _, c := range req.CheckConsistency {
		err := proof.VerifyConsistency(hasher, c.Size1, c.Size2, decodeAll(c.Proof), decode(c.Root1), decode(c.Root2))
		res.CheckConsistency = append(res.CheckConsistency, err == nil)
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		fail(err)
	}
}
