package bootstrap

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	"github.com/containerd/errdefs"

	"github.com/containerd/containerd/v2/pkg/protobuf/proto"

	"github.com/shimkeeper/shimkeeper/layout"
)

// CurrentVersion is the newest task API version spoken (task v3).
const CurrentVersion = 3

// ParseStartResponse decodes what a shim's `start` printed, or what a
// bundle's bootstrap.json holds, in every form stock containerd accepts:
//
//  1. a protobuf BootstrapResult, taken as is;
//  2. a JSON BootstrapResult with version >= 2;
//  3. anything else: the trimmed text is a ttrpc address, task API v2.
//
// Forms 2 and 3 reject a version newer than CurrentVersion with
// ErrNotImplemented. An empty reply, or a reply in form 1 or 2 without an
// address, is an error here: stock would dial the empty abstract address,
// be refused, and take a live shim for a dead one.
func ParseStartResponse(response []byte) (*bootapi.BootstrapResult, error) {
	var result bootapi.BootstrapResult
	if err := proto.Unmarshal(response, &result); err == nil && len(bytes.TrimSpace(response)) > 0 {
		if result.Address == "" {
			return nil, fmt.Errorf("shim bootstrap reply has no address: %w", errdefs.ErrInvalidArgument)
		}
		return &result, nil
	}
	response = bytes.TrimSpace(response)
	if len(response) == 0 {
		return nil, fmt.Errorf("shim returned no address: %w", errdefs.ErrInvalidArgument)
	}
	params := &bootapi.BootstrapResult{}
	if err := json.Unmarshal(response, params); err != nil || params.Version < 2 {
		params = &bootapi.BootstrapResult{Address: string(response), Protocol: "ttrpc", Version: 2}
	}
	if params.Version > CurrentVersion {
		return nil, fmt.Errorf("unsupported shim version (%d): %w", params.Version, errdefs.ErrNotImplemented)
	}
	if params.Address == "" {
		return nil, fmt.Errorf("shim bootstrap reply has no address: %w", errdefs.ErrInvalidArgument)
	}
	return params, nil
}

// Read reads <bundle>/bootstrap.json. When it is absent it falls
// back to a 1.x-era <bundle>/address file (version 2, ttrpc), as stock
// does, but without writing anything: migrating the file is the caller's
// decision. legacy reports that the address file was used.
func Read(bundlePath string) (params *bootapi.BootstrapResult, legacy bool, err error) {
	p, form, err := ReadForm(bundlePath)
	return p, form == FormLegacyAddress, err
}

// Form says where a shim's bootstrap params were read from, and so
// how far its address can be trusted.
type Form uint8

const (
	// FormJSON: bootstrap.json as containerd writes it. Trusted.
	FormJSON Form = iota
	// FormLegacyAddress: a 1.x-era address file. Trusted.
	FormLegacyAddress
	// FormOther: bootstrap.json in a form containerd never writes
	// (protobuf, plain text): accepted as stock accepts it, but it may be
	// a damaged file read as an address, so a refused dial to it proves
	// nothing.
	FormOther
)

// ReadForm is Read, also saying which form the params came in. Either
// file must be a regular file (layout.ReadRegular): a FIFO would block the
// read for ever, a symlink would lead out of the bundle.
func ReadForm(bundlePath string) (*bootapi.BootstrapResult, Form, error) {
	data, err := layout.ReadRegular(filepath.Join(bundlePath, layout.FileBootstrap))
	if err == nil {
		if p, err := parseFile(data); err == nil {
			return p, FormJSON, nil
		}
		p, err := ParseStartResponse(data)
		if err != nil {
			return nil, FormOther, fmt.Errorf("parse %s: %w", layout.FileBootstrap, err)
		}
		return p, FormOther, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, FormJSON, err
	}
	// As stock's shim.ReadAddress: the file's bytes, untrimmed.
	data, err = layout.ReadRegular(filepath.Join(bundlePath, layout.FileAddress))
	if err != nil {
		return nil, FormLegacyAddress, fmt.Errorf("no %s and no legacy address file: %w", layout.FileBootstrap, err)
	}
	address := string(data)
	if address == "" {
		return nil, FormLegacyAddress, fmt.Errorf("legacy address file is empty: %w", errdefs.ErrInvalidArgument)
	}
	return &bootapi.BootstrapResult{Version: 2, Address: address, Protocol: "ttrpc"}, FormLegacyAddress, nil
}

// parseFile decodes a bootstrap.json. Containerd (stock and ours)
// only ever writes it with encoding/json, so unlike a `start` reply it is
// not read as address text: a damaged file read that way would be dialled
// as an abstract socket, refused, and taken as proof that a live shim is
// dead.
func parseFile(data []byte) (*bootapi.BootstrapResult, error) {
	p := &bootapi.BootstrapResult{}
	if err := json.Unmarshal(bytes.TrimSpace(data), p); err != nil {
		return nil, fmt.Errorf("not a JSON bootstrap result: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	switch {
	case p.Version < 2:
		return nil, fmt.Errorf("version %d is below 2: %w", p.Version, errdefs.ErrInvalidArgument)
	case p.Version > CurrentVersion:
		return nil, fmt.Errorf("unsupported shim version (%d): %w", p.Version, errdefs.ErrNotImplemented)
	case p.Address == "":
		return nil, fmt.Errorf("no address: %w", errdefs.ErrInvalidArgument)
	}
	return p, nil
}

// Write writes params to <bundle>/bootstrap.json atomically (temp
// file and rename, mode 0644) with encoding/json, byte-compatible with
// stock.
func Write(bundlePath string, params *bootapi.BootstrapResult) error {
	data, err := json.Marshal(params)
	if err != nil {
		return err
	}
	return layout.WriteFileAtomic(layout.BundleFile(bundlePath, layout.FileBootstrap), data, 0o644)
}
