module claiim.dev/test/merkle-reference

go 1.21

require github.com/transparency-dev/merkle v0.0.2
