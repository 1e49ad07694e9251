//! `hoist-grpc-codegen PROTO OUT_DIR`: compiles PROTO with protox and writes the
//! prost messages and the tonic server and client (without the transport helpers)
//! into OUT_DIR/inference.rs.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(proto), Some(out)) = (args.next(), args.next()) else {
        return Err("usage: hoist-grpc-codegen PROTO OUT_DIR".into());
    };
    let dir = std::path::Path::new(&proto)
        .parent()
        .ok_or("PROTO has no directory")?
        .to_path_buf();
    let fds = protox::compile([&proto], [&dir])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .build_transport(false)
        .bytes(".")
        .out_dir(&out)
        .compile_fds(fds)?;
    Ok(())
}
