module mlxrun/bindings/go

go 1.23
