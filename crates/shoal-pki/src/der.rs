//! A minimal DER reader and writer for the few X.509 fields this crate reads or rewrites.
//!
//! Why not rcgen alone: its `DistinguishedName` holds one value per attribute type, so a
//! subject cannot carry several `O=` groups (rustls/rcgen#81), and it reads a CA certificate
//! back only through `x509-parser`, which would add about a dozen crates. The certificates
//! parsed here are ones this crate produced or ones rustls has already verified, so a small,
//! strict reader that refuses anything unexpected is enough.

/// Tags of the DER elements read or written here (all single-byte, low tag numbers).
const TAG_BIT_STRING: u8 = 0x03;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_OID: u8 = 0x06;
const TAG_UTF8_STRING: u8 = 0x0c;
const TAG_PRINTABLE_STRING: u8 = 0x13;
const TAG_IA5_STRING: u8 = 0x16;
const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
/// `[0] EXPLICIT Version` at the start of a TBSCertificate.
const TAG_VERSION: u8 = 0xa0;
/// `[3] EXPLICIT Extensions` at the end of a TBSCertificate.
const TAG_EXTENSIONS: u8 = 0xa3;

/// Encoded object identifier contents of the name attributes and extension used here.
pub(crate) const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
pub(crate) const OID_ORGANIZATION: &[u8] = &[0x55, 0x04, 0x0a];
const OID_SUBJECT_KEY_IDENTIFIER: &[u8] = &[0x55, 0x1d, 0x0e];

/// Longest length field accepted: four bytes describe up to 4 GiB, far beyond any certificate.
const LENGTH_BYTES_MAX: usize = 4;

/// Fields of a TBSCertificate after the optional version, in order (RFC 5280 §4.1).
const FIELD_ISSUER: usize = 2;
const FIELD_SUBJECT: usize = 4;
const FIELD_SUBJECT_PUBLIC_KEY_INFO: usize = 5;
const FIELDS_REQUIRED: usize = 6;

/// One DER element: its tag, its contents, and its whole encoding (header and contents).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Element<'a> {
    pub(crate) tag: u8,
    pub(crate) content: &'a [u8],
    pub(crate) encoded: &'a [u8],
}

/// The fields of an X.509 certificate this crate needs, borrowed from its DER encoding.
#[derive(Debug)]
pub(crate) struct CertificateView<'a> {
    tbs_fields: Vec<Element<'a>>,
    /// 1 when the optional version field is present, else 0.
    first_field: usize,
    signature_algorithm: Element<'a>,
}

impl<'a> CertificateView<'a> {
    /// Parses `der` as one certificate, or `None` if it is not shaped like one.
    pub(crate) fn parse(der: &'a [u8]) -> Option<Self> {
        let certificate = read_only(der, TAG_SEQUENCE)?;
        let [tbs, signature_algorithm, signature]: [Element<'a>; 3] =
            read_children(certificate.content)?.try_into().ok()?;
        if tbs.tag != TAG_SEQUENCE
            || signature_algorithm.tag != TAG_SEQUENCE
            || signature.tag != TAG_BIT_STRING
        {
            return None;
        }
        let tbs_fields = read_children(tbs.content)?;
        let first_field = usize::from(tbs_fields.first()?.tag == TAG_VERSION);
        if tbs_fields.len() < first_field + FIELDS_REQUIRED {
            return None;
        }
        let view = Self { tbs_fields, first_field, signature_algorithm };
        let names_and_key = [FIELD_ISSUER, FIELD_SUBJECT, FIELD_SUBJECT_PUBLIC_KEY_INFO];
        names_and_key.iter().all(|&field| view.field(field).tag == TAG_SEQUENCE).then_some(view)
    }

    /// The issuer `Name`, whole element.
    #[cfg(test)]
    pub(crate) fn issuer(&self) -> Element<'a> {
        self.field(FIELD_ISSUER)
    }

    /// The subject `Name`, whole element.
    pub(crate) fn subject(&self) -> Element<'a> {
        self.field(FIELD_SUBJECT)
    }

    /// The `SubjectPublicKeyInfo`, whole element.
    pub(crate) fn subject_public_key_info(&self) -> Element<'a> {
        self.field(FIELD_SUBJECT_PUBLIC_KEY_INFO)
    }

    /// The outer `signatureAlgorithm`, whole element.
    pub(crate) fn signature_algorithm(&self) -> Element<'a> {
        self.signature_algorithm
    }

    /// The key identifier in the subjectKeyIdentifier extension, if there is one.
    pub(crate) fn subject_key_identifier(&self) -> Option<&'a [u8]> {
        let optional_fields = &self.tbs_fields[self.first_field + FIELDS_REQUIRED..];
        let extensions = optional_fields.iter().find(|field| field.tag == TAG_EXTENSIONS)?;
        let extensions = read_only(extensions.content, TAG_SEQUENCE)?;
        for extension in read_children(extensions.content)? {
            // Extension ::= SEQUENCE { extnID, critical BOOLEAN DEFAULT FALSE, extnValue }
            let parts = read_children(extension.content)?;
            let (id, value) = (parts.first()?, parts.last()?);
            if id.tag == TAG_OID && id.content == OID_SUBJECT_KEY_IDENTIFIER && value.tag == TAG_OCTET_STRING
            {
                return Some(read_only(value.content, TAG_OCTET_STRING)?.content);
            }
        }
        None
    }

    /// The TBSCertificate re-encoded with `issuer` and `subject` (whole `Name` elements)
    /// in place of the originals; every other field is copied byte for byte.
    pub(crate) fn tbs_with_names(&self, issuer: &[u8], subject: &[u8]) -> Vec<u8> {
        let mut content = Vec::new();
        for (index, field) in self.tbs_fields.iter().enumerate() {
            let replacement = match index.checked_sub(self.first_field) {
                Some(FIELD_ISSUER) => issuer,
                Some(FIELD_SUBJECT) => subject,
                _ => field.encoded,
            };
            content.extend_from_slice(replacement);
        }
        encode(TAG_SEQUENCE, &content)
    }

    fn field(&self, field: usize) -> Element<'a> {
        self.tbs_fields[self.first_field + field]
    }
}

/// Encodes `Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signature }`.
pub(crate) fn encode_certificate(tbs: &[u8], signature_algorithm: &[u8], signature: &[u8]) -> Vec<u8> {
    // A signature is whole bytes, so the BIT STRING's "unused bits" prefix is zero.
    let mut bits = Vec::with_capacity(signature.len() + 1);
    bits.push(0);
    bits.extend_from_slice(signature);
    let mut content = Vec::new();
    content.extend_from_slice(tbs);
    content.extend_from_slice(signature_algorithm);
    content.extend_from_slice(&encode(TAG_BIT_STRING, &bits));
    encode(TAG_SEQUENCE, &content)
}

/// Encodes a `Name` with one attribute per RDN, in the given order, each value a UTF8String.
pub(crate) fn encode_name(attributes: &[(&[u8], &str)]) -> Vec<u8> {
    let mut content = Vec::new();
    for (oid, value) in attributes {
        let mut pair = encode(TAG_OID, oid);
        pair.extend_from_slice(&encode(TAG_UTF8_STRING, value.as_bytes()));
        content.extend_from_slice(&encode(TAG_SET, &encode(TAG_SEQUENCE, &pair)));
    }
    encode(TAG_SEQUENCE, &content)
}

/// The `(attribute type OID, value)` pairs of a `Name`'s contents, in order, flattening
/// multi-valued RDNs.
pub(crate) fn name_attributes(name: Element<'_>) -> Option<Vec<(&[u8], Element<'_>)>> {
    let mut attributes = Vec::new();
    for rdn in read_children(name.content)? {
        if rdn.tag != TAG_SET {
            return None;
        }
        for pair in read_children(rdn.content)? {
            let [oid, value]: [Element<'_>; 2] = read_children(pair.content)?.try_into().ok()?;
            if pair.tag != TAG_SEQUENCE || oid.tag != TAG_OID {
                return None;
            }
            attributes.push((oid.content, value));
        }
    }
    Some(attributes)
}

/// The text of a DirectoryString, for the encodings that are plainly ASCII or UTF-8.
///
/// Teletex, BMP and Universal strings are refused: nothing in shoal writes them, and
/// guessing at their decoding could make two different names read alike.
pub(crate) fn directory_string(value: Element<'_>) -> Option<&str> {
    let text = std::str::from_utf8(value.content).ok()?;
    match value.tag {
        TAG_UTF8_STRING => Some(text),
        TAG_PRINTABLE_STRING | TAG_IA5_STRING if text.is_ascii() => Some(text),
        _ => None,
    }
}

/// Reads `input` as exactly one element with tag `tag`.
fn read_only(input: &[u8], tag: u8) -> Option<Element<'_>> {
    let (element, rest) = read_element(input)?;
    (element.tag == tag && rest.is_empty()).then_some(element)
}

/// Splits `content` into the elements that fill it exactly.
fn read_children(content: &[u8]) -> Option<Vec<Element<'_>>> {
    let mut children = Vec::new();
    let mut rest = content;
    while !rest.is_empty() {
        let (child, after) = read_element(rest)?;
        children.push(child);
        rest = after;
    }
    Some(children)
}

/// Reads the element at the start of `input`, returning it and what follows.
fn read_element(input: &[u8]) -> Option<(Element<'_>, &[u8])> {
    let (&tag, after_tag) = input.split_first()?;
    // Multi-byte tags never occur in the fields read here.
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, after_first) = after_tag.split_first()?;
    let (length, after_length) = if first < 0x80 {
        (usize::from(first), after_first)
    } else {
        let count = usize::from(first & 0x7f);
        // A count of zero is BER's indefinite length, which DER forbids.
        if count == 0 || count > LENGTH_BYTES_MAX || after_first.len() < count {
            return None;
        }
        let (bytes, after_length) = after_first.split_at(count);
        let length = bytes.iter().fold(0usize, |length, &byte| (length << 8) | usize::from(byte));
        // DER requires the shortest form: no leading zero byte, no long form below 128.
        if bytes[0] == 0 || length < 0x80 {
            return None;
        }
        (length, after_length)
    };
    if after_length.len() < length {
        return None;
    }
    let (content, rest) = after_length.split_at(length);
    let encoded = &input[..input.len() - rest.len()];
    Some((Element { tag, content, encoded }, rest))
}

/// Encodes one element with a definite, shortest-form length.
fn encode(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 2 + LENGTH_BYTES_MAX);
    out.push(tag);
    if content.len() < 0x80 {
        out.push(content.len() as u8);
    } else {
        let length = content.len().to_be_bytes();
        let skip = length.iter().take_while(|&&byte| byte == 0).count();
        let significant = &length[skip..];
        assert!(significant.len() <= LENGTH_BYTES_MAX, "element of {} bytes", content.len());
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Encoding then reading back gives the same element for lengths on both sides of
    // each length-form boundary, and the encoding is exactly what DER prescribes.
    #[test]
    fn lengths_round_trip_in_shortest_form() {
        fn check(length: usize, header: &[u8]) {
            let content = vec![0x5a; length];
            let encoded = encode(TAG_OCTET_STRING, &content);
            assert_eq!(&encoded[..header.len()], header, "length {length}");
            let (element, rest) = read_element(&encoded).expect("reads back");
            assert!(rest.is_empty());
            assert_eq!(element.tag, TAG_OCTET_STRING);
            assert_eq!(element.content, &content[..]);
            assert_eq!(element.encoded, &encoded[..]);
        }
        check(0, &[0x04, 0x00]);
        check(0x7f, &[0x04, 0x7f]);
        check(0x80, &[0x04, 0x81, 0x80]);
        check(0xff, &[0x04, 0x81, 0xff]);
        check(0x100, &[0x04, 0x82, 0x01, 0x00]);
        check(0x1_0000, &[0x04, 0x83, 0x01, 0x00, 0x00]);
    }

    // Encodings DER forbids, or that run past the input, are refused rather than guessed at.
    #[test]
    fn malformed_elements_are_refused() {
        fn check(input: &[u8]) {
            assert!(read_element(input).is_none(), "{input:02x?} was accepted");
        }
        check(&[]);
        check(&[0x04]);
        check(&[0x04, 0x80]); // indefinite length
        check(&[0x04, 0x81, 0x05, 0, 0, 0, 0, 0]); // long form below 128
        check(&[0x04, 0x82, 0x00, 0x80]); // leading zero length byte
        check(&[0x04, 0x85, 1, 0, 0, 0, 0]); // length field longer than accepted
        check(&[0x04, 0x02, 0x00]); // content shorter than its length
        check(&[0x1f, 0x01, 0x00]); // multi-byte tag
    }

    // A name built here reads back as the same attributes, in order, including repeats.
    #[test]
    fn names_round_trip() {
        let attributes: [(&[u8], &str); 3] =
            [(OID_ORGANIZATION, "system:masters"), (OID_ORGANIZATION, "ops"), (OID_COMMON_NAME, "ädmin")];
        let encoded = encode_name(&attributes);
        let name = read_only(&encoded, TAG_SEQUENCE).expect("one SEQUENCE");
        let read: Vec<(&[u8], &str)> = name_attributes(name)
            .expect("well formed")
            .into_iter()
            .map(|(oid, value)| (oid, directory_string(value).expect("UTF8String")))
            .collect();
        assert_eq!(read, attributes);
    }
}
