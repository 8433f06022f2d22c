// OPA's own implementations of Rego builtins, compiled to WebAssembly (WASI preview 1) for CLAIIM.
//
// CLAIIM runs policies compiled by `opa build -t wasm`; builtins that OPA's WebAssembly runtime
// lacks are provided by the host. For the ones CLAIIM does not implement in TypeScript, this module
// runs OPA's Go implementation (topdown), so that they give what `opa eval` gives, errors included.
// It decides nothing by itself: time is the decision's clock (handed in), there is no network
// (http.send, net.lookup_ip_addr are never called) and no randomness that a decision depends on.
//
// Protocol (one call at a time): the host writes "name\x00now_ns\x00[args...]" (args in OPA's value
// syntax) into the buffer that alloc returns, calls call(n), and reads len bytes at out():
// "V<value>" a result, "U" undefined, "E<message>" an error (undefined for the policy), "H<message>"
// an error that halts the evaluation.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"unsafe"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/topdown/builtins"
)

var in []byte
var out []byte
var cache = builtins.Cache{}

//go:wasmexport alloc
func alloc(n int32) int32 {
	if int(n) > cap(in) {
		in = make([]byte, n)
	}
	in = in[:n]
	if n == 0 {
		return 0
	}
	return int32(uintptr(unsafe.Pointer(&in[0])))
}

//go:wasmexport out
func outPtr() int32 {
	if len(out) == 0 {
		return 0
	}
	return int32(uintptr(unsafe.Pointer(&out[0])))
}

//go:wasmexport call
func call(n int32) (length int32) {
	defer func() {
		if r := recover(); r != nil {
			out = []byte(fmt.Sprintf("E%v", r))
			length = int32(len(out))
		}
	}()
	out = run(in[:n])
	return int32(len(out))
}

func run(msg []byte) []byte {
	parts := bytes.SplitN(msg, []byte{0}, 3)
	if len(parts) != 3 {
		return []byte("Hmalformed call")
	}
	name := string(parts[0])
	f := topdown.GetBuiltin(name)
	if f == nil {
		return []byte("Hunknown builtin " + name)
	}
	now, err := strconv.ParseInt(string(parts[1]), 10, 64)
	if err != nil {
		return []byte("Hbad time")
	}
	args, err := ast.ParseTerm(string(parts[2]))
	if err != nil {
		return []byte("Hbad arguments: " + err.Error())
	}
	arr, ok := args.Value.(*ast.Array)
	if !ok {
		return []byte("Hbad arguments")
	}
	operands := make([]*ast.Term, arr.Len())
	for i := range operands {
		operands[i] = arr.Elem(i)
	}
	bctx := topdown.BuiltinContext{
		Context:  context.Background(),
		Metrics:  metrics.New(),
		Time:     ast.NumberTerm(json.Number(strconv.FormatInt(now, 10))),
		Cache:    cache,
		Location: &ast.Location{File: "", Row: 0, Col: 0},
	}
	var result *ast.Term
	err = f(bctx, operands, func(t *ast.Term) error {
		result = t
		return nil
	})
	if err != nil {
		var halt topdown.Halt
		if errors.As(err, &halt) {
			return []byte("H" + err.Error())
		}
		return []byte("E" + err.Error())
	}
	if result == nil {
		return []byte("U")
	}
	var b bytes.Buffer
	b.WriteByte('V')
	if err := write(&b, result.Value); err != nil {
		return []byte("E" + err.Error())
	}
	return b.Bytes()
}

// write emits a value in OPA's value syntax with JSON string escapes, which CLAIIM's host reads.
func write(b *bytes.Buffer, v ast.Value) error {
	switch v := v.(type) {
	case ast.Null:
		b.WriteString("null")
	case ast.Boolean:
		b.WriteString(strconv.FormatBool(bool(v)))
	case ast.Number:
		b.WriteString(string(v))
	case ast.String:
		s, err := json.Marshal(string(v))
		if err != nil {
			return err
		}
		b.Write(s)
	case *ast.Array:
		b.WriteByte('[')
		for i := 0; i < v.Len(); i++ {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := write(b, v.Elem(i).Value); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	case ast.Set:
		if v.Len() == 0 {
			b.WriteString("set()")
			return nil
		}
		sorted := v.Sorted()
		b.WriteByte('{')
		for i := 0; i < sorted.Len(); i++ {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := write(b, sorted.Elem(i).Value); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	case ast.Object:
		keys := v.Keys()
		sort.Slice(keys, func(i, j int) bool { return keys[i].Value.Compare(keys[j].Value) < 0 })
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := write(b, k.Value); err != nil {
				return err
			}
			b.WriteByte(':')
			if err := write(b, v.Get(k).Value); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	default:
		return fmt.Errorf("builtin returned a %s, not a value", ast.TypeName(v))
	}
	return nil
}

// names writes the JSON list of the builtins this module implements (OPA declares a few that only
// its evaluator handles, such as rego.metadata.*; those are not listed).
//
//go:wasmexport names
func names() int32 {
	list := []string{}
	for _, b := range ast.Builtins {
		if topdown.GetBuiltin(b.Name) != nil {
			list = append(list, b.Name)
		}
	}
	sort.Strings(list)
	out, _ = json.Marshal(list)
	return int32(len(out))
}

func main() {}
