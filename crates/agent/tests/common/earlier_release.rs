//! What an earlier release of this agent wrote, for the tests that start
//! from it.

/// A PKCS#1 RSA key in a PKCS#8 envelope, PEM `PRIVATE KEY`, as an earlier
/// release of this agent wrote it (the Go agent's loading code cannot use it).
pub fn pkcs8_pem(pkcs1: &[u8]) -> String {
    fn der(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = content.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes: Vec<u8> = len
                .to_be_bytes()
                .into_iter()
                .skip_while(|b| *b == 0)
                .collect();
            out.push(0x80 | bytes.len() as u8);
            out.extend(bytes);
        }
        out.extend_from_slice(content);
        out
    }
    let version = der(0x02, &[0]);
    // rsaEncryption, NULL parameters.
    let algorithm = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let key = der(0x04, pkcs1);
    let info = der(0x30, &[version, algorithm.to_vec(), key].concat());
    pem::encode(&pem::Pem::new("PRIVATE KEY", info))
}
