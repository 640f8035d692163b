package httpapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"net/http"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"github.com/breachd/breachd/auth"
)

// Fast returns the HTTP face as a fasthttp handler. GET /range/{prefix},
// the route that takes nearly all the requests (Pwned Passwords clients
// ask one range a password), is answered on fasthttp's request itself:
// net/http's server spends most of such a request on itself (a background
// read and deadlines a request; bench/README.md). Every other route, and
// a range request that is not a plain GET of one path segment, goes to
// the net/http face (ServeHTTP) through fasthttpadaptor. Both answer
// through the same guard (admit), range answer (rangeAnswer) and metrics.
func (a *API) Fast() fasthttp.RequestHandler {
	std := fasthttpadaptor.NewFastHTTPHandler(a)
	return func(ctx *fasthttp.RequestCtx) {
		prefix, ok := bytes.CutPrefix(ctx.Path(), []byte("/range/"))
		if !ctx.IsGet() || !ok || len(prefix) == 0 || bytes.IndexByte(prefix, '/') >= 0 {
			std(ctx)
			return
		}
		a.fastRange(ctx, string(prefix))
	}
}

// fastRange is rangeHandler, guard and cors for a fasthttp request.
func (a *API) fastRange(ctx *fasthttp.RequestCtx, prefix string) {
	const route = "range"
	start := time.Now()
	ctx.Response.Header.Set("Access-Control-Allow-Origin", "*")
	p, err := a.admit(fastRequest{ctx}, route, a.rangeRule)
	if err != nil {
		code, msg, retry := refusal(a.log, route, err)
		if retry != "" {
			ctx.Response.Header.Set("Retry-After", retry)
		}
		code, body := marshalJSON(code, errorBody{StatusCode: code, Message: msg})
		ctx.Response.Header.Set("X-Content-Type-Options", "nosniff")
		ctx.SetContentType(jsonType)
		ctx.SetStatusCode(code)
		ctx.SetBody(body)
		a.observe(route, code, start)
		return
	}
	var c context.Context = ctx
	if p != nil {
		c = auth.NewContext(ctx, p)
	}
	sc := scratchPool.Get().(*rangeScratch)
	defer scratchPool.Put(sc)
	// The answer is written into the response's own (pooled) body buffer,
	// taken and handed back: a padded answer is about 35 KB, and SetBody
	// would copy it there from a buffer of ours once more.
	body := ctx.Response.SwapBody(nil)[:0]
	body, version, code, msg := a.rangeAnswer(c, sc, body, prefix, string(ctx.URI().QueryString()),
		bytes.EqualFold(ctx.Request.Header.Peek("Add-Padding"), []byte("true")))
	ctx.SetStatusCode(code)
	if code != http.StatusOK {
		ctx.Response.SwapBody(body[:0])
		ctx.SetContentType("text/plain; charset=utf-8")
		ctx.SetBodyString(msg)
	} else {
		ctx.SetContentType("text/plain")
		ctx.Response.Header.Set(headerCorpusVersion, strconv.FormatUint(version, 10))
		ctx.Response.SwapBody(body)
	}
	a.observe(route, code, start)
}

// fastRequest is a fasthttp request as the guard reads it.
type fastRequest struct{ ctx *fasthttp.RequestCtx }

func (q fastRequest) userAgent() string { return string(q.ctx.UserAgent()) }
func (q fastRequest) header(name string) string {
	return string(q.ctx.Request.Header.Peek(name))
}
func (q fastRequest) headerValues(name string) []string {
	var out []string
	for _, v := range q.ctx.Request.Header.PeekAll(name) {
		out = append(out, string(v))
	}
	return out
}
func (q fastRequest) remoteAddr() string             { return q.ctx.RemoteAddr().String() }
func (q fastRequest) tlsState() *tls.ConnectionState { return q.ctx.TLSConnectionState() }
