package distdriver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/minio/minio-go/v7"
)

// writer uploads parts of driver.chunkSize bytes; the last part written
// before Close may be shorter, so a resumed writer whose last part is below
// S3's minimum first folds what was written into a new upload (as s3-aws).
type writer struct {
	ctx      context.Context
	d        *s3Driver
	key      string
	uploadID string
	parts    []minio.ObjectPart
	size     int64
	buf      *bytes.Buffer

	closed, committed, cancelled bool
}

func (d *s3Driver) newWriter(ctx context.Context, key, uploadID string, parts []minio.ObjectPart) *writer {
	var size int64
	for _, p := range parts {
		size += p.Size
	}
	return &writer{ctx: ctx, d: d, key: key, uploadID: uploadID, parts: parts, size: size, buf: d.pool.Get().(*bytes.Buffer)}
}

func (w *writer) completeParts() []minio.CompletePart {
	out := make([]minio.CompletePart, len(w.parts))
	for i, p := range w.parts {
		out[i] = minio.CompletePart{PartNumber: p.PartNumber, ETag: p.ETag}
	}
	sort.Slice(out, func(i, k int) bool { return out[i].PartNumber < out[k].PartNumber })
	return out
}

// complete finishes the upload, aborting it when that fails.
func (w *writer) complete(ctx context.Context, parts []minio.CompletePart) error {
	_, err := w.d.c.CompleteMultipartUpload(ctx, w.d.bucket, w.key, w.uploadID, parts, minio.PutObjectOptions{ContentType: "application/octet-stream"})
	if err != nil {
		if aerr := w.d.c.AbortMultipartUpload(ctx, w.d.bucket, w.key, w.uploadID); aerr != nil {
			return errors.Join(err, aerr)
		}
	}
	return err
}

// restart turns the parts written so far into the object, then starts a
// new upload whose first part is that object (or, below S3's minimum part,
// whose buffer holds its bytes).
func (w *writer) restart() error {
	if err := w.complete(w.ctx, w.completeParts()); err != nil {
		return err
	}
	id, err := w.d.newUpload(w.ctx, w.key)
	if err != nil {
		return err
	}
	w.uploadID = id
	if w.size < minChunkSize {
		body, _, _, err := w.d.c.GetObject(w.ctx, w.d.bucket, w.key, minio.GetObjectOptions{})
		if err != nil {
			return err
		}
		defer body.Close()
		w.buf.Reset()
		w.parts, w.size = nil, 0
		_, err = io.Copy(w.buf, body)
		return err
	}
	cp, err := w.d.c.CopyObjectPart(w.ctx, w.d.bucket, w.key, w.d.bucket, w.key, id, 1, 0, -1, nil)
	if err != nil {
		return err
	}
	w.parts = []minio.ObjectPart{{PartNumber: 1, ETag: cp.ETag, Size: w.size}}
	return nil
}

func (w *writer) Write(p []byte) (int, error) {
	if err := w.done(); err != nil {
		return 0, err
	}
	if n := len(w.parts); n > 0 && w.parts[n-1].Size < minChunkSize {
		if err := w.restart(); err != nil {
			return 0, err
		}
	}
	n, _ := w.buf.Write(p)
	for w.buf.Len() >= w.d.chunkSize {
		if err := w.flush(); err != nil {
			return 0, fmt.Errorf("flush: %w", err)
		}
	}
	return n, nil
}

// Size is the number of bytes uploaded in parts (as s3-aws: what is still
// buffered counts once Close or Commit has sent it).
func (w *writer) Size() int64 { return w.size }

// Close uploads what is buffered as a part and releases the buffer; the
// upload stays open for a later Writer(path, true).
func (w *writer) Close() error {
	if w.closed {
		return errors.New("already closed")
	}
	w.closed = true
	defer w.release()
	return w.flush()
}

func (w *writer) release() {
	w.buf.Reset()
	w.d.pool.Put(w.buf)
}

func (w *writer) Cancel(ctx context.Context) error {
	if err := w.done(); err != nil {
		return err
	}
	w.cancelled = true
	return w.d.c.AbortMultipartUpload(ctx, w.d.bucket, w.key, w.uploadID)
}

func (w *writer) Commit(ctx context.Context) error {
	if err := w.done(); err != nil {
		return err
	}
	if err := w.flush(); err != nil {
		return err
	}
	w.committed = true
	parts := w.completeParts()
	if len(parts) == 0 {
		// An empty file: S3 completes no upload without a part.
		p, err := w.d.c.PutObjectPart(w.ctx, w.d.bucket, w.key, w.uploadID, 1, bytes.NewReader(nil), 0, minio.PutObjectPartOptions{})
		if err != nil {
			return err
		}
		parts = []minio.CompletePart{{PartNumber: 1, ETag: p.ETag}}
	}
	return w.complete(ctx, parts)
}

// flush uploads at most chunkSize bytes of the buffer as the next part.
func (w *writer) flush() error {
	if w.buf.Len() == 0 {
		return nil
	}
	b := w.buf.Next(w.d.chunkSize)
	num := len(w.parts) + 1
	p, err := w.d.c.PutObjectPart(w.ctx, w.d.bucket, w.key, w.uploadID, num, bytes.NewReader(b), int64(len(b)), minio.PutObjectPartOptions{})
	if err != nil {
		return fmt.Errorf("upload part: %w", err)
	}
	w.parts = append(w.parts, minio.ObjectPart{PartNumber: num, ETag: p.ETag, Size: int64(len(b))})
	w.size += int64(len(b))
	if w.buf.Len() == 0 {
		w.buf.Reset() // reuse the buffer from its start
	}
	return nil
}

func (w *writer) done() error {
	switch {
	case w.closed:
		return errors.New("already closed")
	case w.committed:
		return errors.New("already committed")
	case w.cancelled:
		return errors.New("already cancelled")
	}
	return nil
}

var _ storagedriver.FileWriter = (*writer)(nil)
