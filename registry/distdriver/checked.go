package distdriver

import (
	"context"
	"io"
	"net/http"

	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
)

// checked refuses the paths Distribution's drivers refuse (as its
// base.Base does, without the tracing) and names the driver in errors.
type checked struct {
	storagedriver.StorageDriver
}

func valid(p string) bool { return storagedriver.PathRegexp.MatchString(p) }

func (c checked) invalid(p string) error {
	return storagedriver.InvalidPathError{Path: p, DriverName: c.Name()}
}

// named sets the driver's name in the errors Distribution tells apart by
// type, and wraps others in storagedriver.Error, exactly as base.Base does.
func (c checked) named(err error) error {
	switch e := err.(type) {
	case nil:
		return nil
	case storagedriver.ErrUnsupportedMethod:
		e.DriverName = c.Name()
		return e
	case storagedriver.PathNotFoundError:
		e.DriverName = c.Name()
		return e
	case storagedriver.InvalidPathError:
		e.DriverName = c.Name()
		return e
	case storagedriver.InvalidOffsetError:
		e.DriverName = c.Name()
		return e
	}
	return storagedriver.Error{DriverName: c.Name(), Detail: err}
}

func (c checked) GetContent(ctx context.Context, p string) ([]byte, error) {
	if !valid(p) {
		return nil, c.invalid(p)
	}
	b, err := c.StorageDriver.GetContent(ctx, p)
	return b, c.named(err)
}

func (c checked) PutContent(ctx context.Context, p string, content []byte) error {
	if !valid(p) {
		return c.invalid(p)
	}
	return c.named(c.StorageDriver.PutContent(ctx, p, content))
}

func (c checked) Reader(ctx context.Context, p string, offset int64) (io.ReadCloser, error) {
	if offset < 0 {
		return nil, storagedriver.InvalidOffsetError{Path: p, Offset: offset, DriverName: c.Name()}
	}
	if !valid(p) {
		return nil, c.invalid(p)
	}
	r, err := c.StorageDriver.Reader(ctx, p, offset)
	return r, c.named(err)
}

func (c checked) Writer(ctx context.Context, p string, appendMode bool) (storagedriver.FileWriter, error) {
	if !valid(p) {
		return nil, c.invalid(p)
	}
	w, err := c.StorageDriver.Writer(ctx, p, appendMode)
	return w, c.named(err)
}

func (c checked) Stat(ctx context.Context, p string) (storagedriver.FileInfo, error) {
	if !valid(p) && p != "/" {
		return nil, c.invalid(p)
	}
	fi, err := c.StorageDriver.Stat(ctx, p)
	return fi, c.named(err)
}

func (c checked) List(ctx context.Context, p string) ([]string, error) {
	if !valid(p) && p != "/" {
		return nil, c.invalid(p)
	}
	l, err := c.StorageDriver.List(ctx, p)
	return l, c.named(err)
}

func (c checked) Move(ctx context.Context, src, dst string) error {
	if !valid(src) {
		return c.invalid(src)
	}
	if !valid(dst) {
		return c.invalid(dst)
	}
	return c.named(c.StorageDriver.Move(ctx, src, dst))
}

func (c checked) Delete(ctx context.Context, p string) error {
	if !valid(p) {
		return c.invalid(p)
	}
	return c.named(c.StorageDriver.Delete(ctx, p))
}

func (c checked) RedirectURL(r *http.Request, p string) (string, error) {
	if !valid(p) {
		return "", c.invalid(p)
	}
	u, err := c.StorageDriver.RedirectURL(r, p)
	return u, c.named(err)
}

func (c checked) Walk(ctx context.Context, p string, f storagedriver.WalkFn, options ...func(*storagedriver.WalkOptions)) error {
	if !valid(p) && p != "/" {
		return c.invalid(p)
	}
	return c.named(c.StorageDriver.Walk(ctx, p, f, options...))
}
