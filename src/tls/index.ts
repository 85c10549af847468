export { type CertifiedKey, createCertificateAuthority, LeafIssuer } from './certificate.js';
