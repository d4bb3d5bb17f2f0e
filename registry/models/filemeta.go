package models

import (
	"archive/tar"
	"encoding/json"
	"io/fs"
	"os"
	"path"
	"time"
)

// AnnotationFileMetadata holds a raw layer's file metadata as JSON
// (FileMetadata), as modctl writes and reads it.
const AnnotationFileMetadata = "org.cncf.model.file.metadata+json"

// FileMetadata is the value of AnnotationFileMetadata (model-spec
// docs/annotations.md).
type FileMetadata struct {
	Name     string    `json:"name"`
	Mode     uint32    `json:"mode"`
	Uid      uint32    `json:"uid"`
	Gid      uint32    `json:"gid"`
	Size     int64     `json:"size"`
	ModTime  time.Time `json:"mtime"`
	Typeflag byte      `json:"typeflag"`
}

// fileMetadata is the annotation value of a file about to be pushed.
func fileMetadata(s source) string {
	b, _ := json.Marshal(FileMetadata{Name: path.Base(s.rel), Mode: uint32(s.mode.Perm()), Uid: s.uid, Gid: s.gid,
		Size: s.size, ModTime: s.mtime.UTC(), Typeflag: tar.TypeReg})
	return string(b)
}

// applyMetadata gives the file rel under DIR the permission bits and mtime
// of a raw layer's AnnotationFileMetadata (setuid, setgid and sticky bits
// are dropped), and its owner when the pull runs as root. Without the
// annotation, or with one that does not parse, the file keeps mode 0644.
func (p *puller) applyMetadata(rel string, ann map[string]string) error {
	v, ok := ann[AnnotationFileMetadata]
	if !ok {
		return nil
	}
	var m FileMetadata
	if json.Unmarshal([]byte(v), &m) != nil {
		return nil
	}
	if m.Mode != 0 {
		if err := p.dir.Chmod(rel, fs.FileMode(m.Mode)&fs.ModePerm); err != nil {
			return err
		}
	}
	return p.setTimeOwner(rel, m.ModTime, int(m.Uid), int(m.Gid))
}

// setTimeOwner gives rel the mtime (unless zero) and, when the pull runs as
// root, the owner a layer recorded for it: a raw layer's metadata
// annotation (applyMetadata) or a tar entry's header (applyHeader).
func (p *puller) setTimeOwner(rel string, mtime time.Time, uid, gid int) error {
	if !mtime.IsZero() {
		if err := p.dir.Chtimes(rel, mtime, mtime); err != nil {
			return err
		}
	}
	if os.Geteuid() == 0 {
		_ = p.dir.Lchown(rel, uid, gid)
	}
	return nil
}
