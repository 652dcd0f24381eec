//! ML-KEM-768 (FIPS 203) over the `ml-kem` crate: the one place postern touches it.
//!
//! Key generation from a 64-byte seed `d ‖ z`, encapsulation with an explicit 32-byte
//! message `m`, and decapsulation, each with length and validity checks. Two users share
//! this one implementation: the TLS X25519MLKEM768 group ([`crate::tls::X25519MLKEM768`],
//! randomised wrappers) and the X-Wing KEM of [`crate::hybrid`] (the seeded forms).
//! Everything here is crate-private.

// Each user needs a subset: with only one of the two features some items go unused.
#![cfg_attr(not(all(feature = "tls", feature = "hybrid")), allow(dead_code))]

use core::fmt;

use ml_kem::kem::{Decapsulate, KeyExport};
use ml_kem::{B32, DecapsulationKey768, EncapsulationKey768, Seed};
use ring::rand::SecureRandom;
use zeroize::{Zeroize, Zeroizing};

/// Bytes of a decapsulation-key seed `d ‖ z` (FIPS 203 §7.1, the preferred private key form).
pub(crate) const SEED_LEN: usize = 64;
/// Bytes of the encapsulation randomness `m` (FIPS 203 §7.2).
pub(crate) const MESSAGE_LEN: usize = 32;
/// Bytes of an encoded encapsulation key (384·k + 32 with k = 3).
pub(crate) const ENCAPSULATION_KEY_LEN: usize = 1184;
/// Bytes of a ciphertext.
pub(crate) const CIPHERTEXT_LEN: usize = 1088;
/// Bytes of a shared secret.
pub(crate) const SHARED_SECRET_LEN: usize = 32;

/// A shared secret, wiped on drop.
pub(crate) type SharedSecret = Zeroizing<[u8; SHARED_SECRET_LEN]>;

/// Why an ML-KEM operation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum Error {
    /// A key or ciphertext does not have its fixed length.
    #[error("ML-KEM-768 input has the wrong length")]
    Length,
    /// The encapsulation key fails the FIPS 203 §7.2 modulus check: a coefficient
    /// is not below q = 3329, so the encoding is not canonical.
    #[error("ML-KEM-768 encapsulation key is not canonical (FIPS 203 modulus check)")]
    InvalidEncapsulationKey,
    /// The system random number generator failed.
    #[error("the system random number generator failed")]
    Random,
}

/// A decapsulation (private) key. Zeroizes on drop; its `Debug` shows no key bytes.
pub(crate) struct DecapsulationKey(DecapsulationKey768);

impl DecapsulationKey {
    /// ML-KEM.KeyGen_internal(d, z) from `seed = d ‖ z`: deterministic, for known
    /// answers and for keys derived from a stored seed.
    pub(crate) fn from_seed(seed: &[u8; SEED_LEN]) -> Self {
        let mut seed = Seed::from(*seed);
        let key = DecapsulationKey768::from_seed(seed);
        seed.zeroize();
        Self(key)
    }

    /// A fresh key from 64 bytes of system randomness.
    pub(crate) fn generate(rng: &dyn SecureRandom) -> Result<Self, Error> {
        let mut seed = Zeroizing::new([0u8; SEED_LEN]);
        rng.fill(seed.as_mut_slice()).map_err(|_| Error::Random)?;
        Ok(Self::from_seed(&seed))
    }

    /// The encoded encapsulation (public) key.
    pub(crate) fn encapsulation_key_bytes(&self) -> [u8; ENCAPSULATION_KEY_LEN] {
        self.0.encapsulation_key().to_bytes().into()
    }

    /// The matching encapsulation key, already validated.
    pub(crate) fn encapsulation_key(&self) -> EncapsulationKey {
        EncapsulationKey(self.0.encapsulation_key().clone())
    }

    /// The legacy 2400-byte expanded form `dk_pke ‖ ek ‖ H(ek) ‖ z`, for the NIST KAT.
    #[cfg(test)]
    #[allow(deprecated)]
    fn expanded_bytes(&self) -> Vec<u8> {
        use ml_kem::ExpandedKeyEncoding as _;
        self.0.to_expanded_bytes().to_vec()
    }

    /// ML-KEM.Decaps. Any ciphertext of the right length is accepted: a forged or
    /// corrupted one yields an unrelated secret (implicit rejection), never an error.
    pub(crate) fn decapsulate(&self, ciphertext: &[u8]) -> Result<SharedSecret, Error> {
        let mut shared = self.0.decapsulate_slice(ciphertext).map_err(|_| Error::Length)?;
        let out = Zeroizing::new(shared.into());
        shared.zeroize();
        Ok(out)
    }
}

impl fmt::Debug for DecapsulationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecapsulationKey").finish_non_exhaustive()
    }
}

/// A validated encapsulation (public) key.
#[derive(Clone, Debug)]
pub(crate) struct EncapsulationKey(EncapsulationKey768);

impl EncapsulationKey {
    /// Decodes a peer's key with the FIPS 203 §7.2 input checks: the type (length)
    /// check and the modulus check (`ByteEncode12(ByteDecode12(ek)) == ek`).
    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let bytes: &ml_kem::Key<EncapsulationKey768> = bytes.try_into().map_err(|_| Error::Length)?;
        EncapsulationKey768::new(bytes).map(Self).map_err(|_| Error::InvalidEncapsulationKey)
    }

    /// ML-KEM.Encaps_internal(ek, m): deterministic in `m`, which must be fresh
    /// uniform randomness outside of known-answer tests.
    pub(crate) fn encapsulate_with_message(
        &self,
        message: &[u8; MESSAGE_LEN],
    ) -> ([u8; CIPHERTEXT_LEN], SharedSecret) {
        let mut m = B32::from(*message);
        let (ciphertext, mut shared) = self.0.encapsulate_deterministic(&m);
        m.zeroize();
        let out = Zeroizing::new(shared.into());
        shared.zeroize();
        (ciphertext.into(), out)
    }

    /// ML-KEM.Encaps with 32 bytes of system randomness.
    pub(crate) fn encapsulate(
        &self,
        rng: &dyn SecureRandom,
    ) -> Result<([u8; CIPHERTEXT_LEN], SharedSecret), Error> {
        let mut message = Zeroizing::new([0u8; MESSAGE_LEN]);
        rng.fill(message.as_mut_slice()).map_err(|_| Error::Random)?;
        Ok(self.encapsulate_with_message(&message))
    }
}

#[cfg(test)]
mod tests {
    use super::{DecapsulationKey, EncapsulationKey, Error};
    use crate::mlkem as mlkem768;
    use ring::rand::SystemRandom;

    fn hex(s: &str) -> Vec<u8> {
        assert!(s.len().is_multiple_of(2), "odd hex length");
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    fn sha256(data: &[u8]) -> Vec<u8> {
        ring::digest::digest(&ring::digest::SHA256, data).as_ref().to_vec()
    }

    // Known answers. Sources:
    // - ml-kem 0.3.4 `tests/examples/ML-KEM-768.pub` (the draft-ietf-lamps-kyber-certificates
    //   example key for the seed 00 01 .. 3f): its SHA-256, computed from that file.
    // - NIST ACVP-Server `gen-val/json-files/ML-KEM-encapDecap-FIPS203/internalProjection.json`.
    // - C2SP Wycheproof `testvectors_v1/mlkem_768_test.json`.

    /// SHA-256 of the encapsulation key for the seed 00 01 02 .. 3f.
    const LAMPS_EK_SHA256: &str = "0b7934c83125c788995e2ba6bd761e33046b3e40571be53e023309a29f398cc9";

    /// ACVP ML-KEM-encapDecap-FIPS203 internal projection, tcId 28: `ek`.
    const ACVP_EK: &str = concat!(
        "1192bf0051ac6dbc72694c7613ac1007e35ca6f2b117f292576166befa33cf46602ae31a03695ccc9a1e23d46e6fe1a2",
        "6be386398a6935ea9d25f695c78042ef1b36e0c0945421c88322a04618542fc770bf338d7b869694837817dc36b24710",
        "58814c143a436424552ad50aa733b48d7cad55f036ae40650e4a298189c40817a52d4bbbf1bb019cf212fed9953b2809",
        "f71763925523a5d989ebeb415e04bcb4e8473c880c8c9349133bcee68ab64d7a979831304db25a390425b1271261b769",
        "bd0c895c44bbf5c90ea6fb79441876c37a0784888b02b1b40bea292a8c4baae85620f50ef91577c4400730d085f53b38",
        "6b3c9fa068ce2061aaf8c39c9e59c503d60338c57163b58594c00ec7b0c55bfa2c5488545cb90dc3c7af6eb25aed08c1",
        "ef8a50af0704b9a1a112a96bcc134ed9b9a0a4f05ba29155472b3060c5cfc70a963df28d60b88d37c3c2f1e9a956120f",
        "3bfa8b4a5b78f72ba8a72b0a26405d39606c7e8a217a691685a7bede3c8adb793469184bf037cfb3c5145035c7753a6f",
        "39614ba5d7a8ea84a40e786c674c12c2948768d424a3fc41335b8aed808c50207cf523622a9162871426119c381fdc75",
        "59b00d33d02145c7a5ce25c6ab834224cc805c9c4c7b749d8a200348ab21f1086068d9afa929908f3c3edeab5734d230",
        "e77706f784655bc5b90e3ca5399ccb3af46f13d3baf768cc53e300e2d86fecb850cae576145c86169ba55b5216ecdc97",
        "8a6b20ad0014977ab9e69091a336ad53f151db0298aae19ce8c25139a529a8d2beda4cb9ba4a908a6660b9320ca345a8",
        "ca421e600166e8928b69d7b7eb132661d1a96cb50116ca638e3b6fdb86b65dd11bb37c9bee40b49dfcc62acbc919664e",
        "dc08120ed17859f9144a64aa7009b972c3cf0595cbeff0497c18cd02cca06970babf300b6726a2fd18c8abe10442ea53",
        "f9f54ba2a459c8d49b25d88d046562c69489a8787f72bcc7b7678e2483351c9972e273b8dfeb79bad0683e493276d592",
        "16c08403045c2794c99003864f0c7038d84626ac3bf70a406c270519b160d6f036d8a42acc55a42abcce2f8c6846613d",
        "5c8891114425d2f8786b0605c690153458148621c00d36bfcbac8bb45751b6713acd9cbb596a445597b732943c499216",
        "401bb3881c8639cb4b5d858280332d2ea2abc5b586e8b13c2146a93f347168e070c3213994fb493ba96ae91912f158b2",
        "f17250f768110c5663d818741fba63a7733464f3b2ef508e16a23f3f125055215bcf857441597f014536bb96a1c2c63b",
        "9de95ec3e074b4990bc6ba472c6a1ed4e85f8f6c33150c5b5e6803d9b678ad025e68bb83c1fac1a4286908002e3b060d",
        "cd058db821b342c006f9a08d75d874b238175f10bd308ba713c68571f55293e15f6a6648b3969c5d8362bb6739265029",
        "794b976341bcd5b157c0644de8c68593779b33ac278969c1cc1b729b12491693a0dbb424ff84924ea980174aac2dc399",
        "5d4503722661b7f880e07584bdc29894e43b9042c2ead515285c1c991cbf6e65b3b9fba36008c9e38298d5c34c562797",
        "5ba013adfc0f6ff3b8a41c5542d505885cc533c2b6478ca7cb3171fbe44121fa5aabcc2b8fa926a83566f7289f7ef911",
        "a4057b8d0aec86bdd7f38cf2d0a4d9033df2a574686824104effe7c4f6a871db",
    );
    /// tcId 28: the encapsulation randomness `m`.
    const ACVP_M: &str = "cd1250b795b2d240f19c8fbff52ac3d8a892ba68f5007e8e77eb901503940eaa";
    /// tcId 28: the expected ciphertext `c`.
    const ACVP_C: &str = concat!(
        "5002906d251890b6c939435b6e801faf4640a1818e25beb91db485bbd94218a42d83adc4fc218d9e16395213120157c1",
        "5fee898d33169a77ea14e6894963c45939876221638e2fb7bf30fbfe01df1d061e83b126eb8adfcb14112c792932d3b5",
        "dc7cc2d109a352e49b37fcaf8b1816a9429bd9ce3f832b59449c94c56ff6d1350769e04a17b831b3edac51f8551d1c15",
        "13ab9f1483b83d726c3133d5caf5fe336ef6f592112a2ba1bfaab7748fa3cf6c5dfa762fd5a6c685d917ecdb44134f4e",
        "890e83efe64363079eda461e163fbffa6440436447d2521e5f3231234d25a9c715c9cb5fb48fca927dfbe05da118341f",
        "ac9756c9f4871062bf5d66ec84422712d629770722ec8bd8c703494131901b092f94fb4c2123a067575cd23ecc1a7bd5",
        "9ecdeaf0dad4a204609d5c335b4f26ce7300b517609283aa5c659bf584dc010253deadccdf94d1dc463ddb7e9cd8fd91",
        "d24caae569d4568c4961d6136179185a24deaa96477676c67488eee7dbe4cd37b519e4535da5411c9f2d78cd4dd95639",
        "7041af818e015b30bfe689c1857526209d444bd4bbfb1d9f50f5eaf1f4adc3ef923c1595819e76c7bf095f9facdf150e",
        "01fb5198226997924414869673b6dbd4b4ba9d05f40f0ca91c0eb631c93c32e8c472d301c4dc036879dfe6842de7f6b4",
        "02e4045847b1aab2b31960f6ed0d0a7aab528f390db65d5b095dae02920bd6a31499384b5fd5284317fbeb3feff7ae72",
        "461ae0a4b83570005e0da88ae5636b296e650b821c81b5f0a5a0f1c9191ebbc81d47c82a8b3da16bc84aab02da257677",
        "2412e8599897a9f2787a845f477762bd72c8261569369c053f1bb28714662ef4edad008b4edcf14305b35b0e70d58703",
        "390d7e2345b37020317aa581cf59888b4ba768a1a7c972b0f582cb3821f9e90141e156ad77aecb615c6194467e1a59ef",
        "425a16063a76c474ff1259adcc49936bd087312572861949f379df68984aeebebea9c2e3fd7ce5df3c1a8f72496bda5b",
        "734dd7832498ec3048ba3908667f479c8de65733027d1add890f395fcbcec1a859292a8a1fc82f294a1a674463ce9baa",
        "920ef86d368f0b9b21c75aa0cfe90deff8f35ae3da96eee8d352ead0ddcecbf17ac442437341e407f8a42f97635655d5",
        "b1d61f62668a5502b5e729d79d9dc194da53b027a673d8f60af0f77c5e94b449348e0282a6d6aa56a98c5800c4397887",
        "8f338cfcb242cb212f83d92b20481cfa4155a17a997ab7dfcf50e139cb1a16c667b7aa1835de4faca94a81581d3ac240",
        "fbf6cba97c56f5a4fc2c462c45cf4950de7a466d934a396f3b66a4c7c9c735bbb249743fd0a3502af7e101a8d7aec9c9",
        "c6058a079b5b7a4462848bd34afb3e1826db505905b23550848bacee62c92fcfeeab2342d9d5f2ffc7677c542fe1c9c3",
        "715b4e2508afa7257023b0c31d369c4562356b2a881301dbab67050889868d86461951777ee85de8db2409ef5d33a62a",
        "9b8648d5268661bb6fc7b9a03bf27a919a9648d594e05e653781998c4194f0b0",
    );
    /// tcId 28: the expected shared secret `k`.
    const ACVP_K: &str = "7f6043ece29f91b10496a4debfa4e3958069cad6e3f0f1f56b77180e5f59271a";
    /// Wycheproof `mlkem_768_test.json` (CCTV/strcmp) tcId 1: the 64-byte seed `d || z`.
    const WYCHEPROOF_SEED: &str = concat!(
        "cbfc4405d1b2a3a386c94c25e0f2d5f5ee92cb0388ff4d6aa04223086d51c3fd24752da14c9fc3b8ae0d9e4a8b1016b8",
        "d8fc69e229c03ea2ef08a4ae0cffc37f",
    );
    /// tcId 1: the encapsulation key the seed expands to.
    const WYCHEPROOF_EK: &str = concat!(
        "8b9a7354e8c1c17a9898f96caf99bba1c625ae0983c4d26e60c12f59bc25d756182b17979e713fff129e6c336a231777",
        "0380858129cb91a902ea5455ca076c20e4158f393aa2783053d8acf92c3286a10436d72af3e8903ce22f8cbab18b1309",
        "aca205aa8a3da45807e5b60e6967a640a713a5b81b0d82bc406934e3c88910cc06f09a68bce991009bb56ae233296218",
        "ff5baf1f475390b8b7494a4e083645985437f2495a073222fea058e1672034151a2e14c2cbcb4ad9068c8e7bcb02886c",
        "4087c14bd8823ec66393fb2e12326b38e655dcab1c13cb2931358715c8be5153293229cc994a5702b7295a6a4a73249a",
        "c5a30a32a6b91dca768c177d8fa59054e548bee40257db6962a83b64ec6de0d3be7b1812c5d99e7a38cf54eaa8413aa0",
        "bd02bf374461f29c2b6aea56f7d33e10dbbc75bb1bf6b555213aac33e652443a186a618b6e9a293919693f1673ea159d",
        "0ee52c92d53e9a5cbd5f4c44419b5493f0286efcb9b5a2ad56a713c4f61ed431aa987805a90475391ccd4c7a28d884bf",
        "1a926b7675b9208897a89a6384c154acca3521c32a994949b2e80b2ff2518c0bbd34184cda443de498a05dfba9ce701b",
        "b914179a0188be0bcda6fbc2cd93afb042481b4a84d821160a1b0ade8bcb97dbaf681547cce0bca674151a261a21aa04",
        "fda318c921c38425b775b995cd7b4eb6369f0b211da186594de815fa3b53a68043e1946468a5899b90578ad49397306f",
        "71acab67c258fa17a31893b72d22151ce1afee150fe550bffde8a24fe4740dd43f387c7ad20b5cca5997879536c30715",
        "74901147727341c1a6fc8043e6454903e88217f0c92b9a4ac54a86e7909390878a35ba18c1e26b13049f41c522bc049d",
        "74db6f76caba39f23d8f07abc26a07a1caba71cb5c12fbc20a715450b2228d17b2ba985cfe2496b033b55f300baf9929",
        "64388a5422298f627ba567730ddb03a195806a5c23a1d315481c52814b0681ea3c804b02c90688c2fbbce9b17d230a42",
        "f8b865417c9e93347f5ff624879962747c7eed886acd48a994b22064ca499c69aa4825be60260d12f63102799828b3cc",
        "ebaa4340b749605017eb4598ff13a634500a48470de9078a34106267d25a0b144d8cdb1a4d527692153da013c0ab27ae",
        "2ca955e7c66238746022d50630892933a05c283a9f4c00c9f984646f75471081722ed3404ce60fed4a06702b8728b62d",
        "920b3224206ab0a4694f9c18e3162b529c16af04b87b4a61cd53a757906d67a139629585d423a3b0986f29c95984e209",
        "5ea4608784b0b31c20cbc36cfd60b773389fe5a8c0958211a35b2c45f21f51a08693c19bfc388c2d677a214ccc5a7cb0",
        "b67030fd6987503c91b0f2646985a9048489dd882bd4141f5419554eb738fa7333c5c57a4ce5541fd6b8ad454c2dea67",
        "ad1c6f848c0a44a1872e40a17d987075d762ba5aaa21d435dd079b989a8ee21a2ce898934a98a02d5b381c302a2d7694",
        "8fa65de15666f57750d580ae1a541c700692dd0b0a6799b5cdb893413bb89bb65182f219a4bc3c80b43bb591bcd05ac6",
        "e9a366552558ed5c5fbe7b4acfc7b23372094f6a87f26c0c46646c55a888871324fea7536e586a5149b9b707c86ea076",
        "486a6822b9bbf59fbfcaedc13284b9813cabdd526e326a6832d3b36efc3102ef",
    );
    /// tcId 1: a ciphertext that takes the implicit-rejection path.
    const WYCHEPROOF_C: &str = concat!(
        "00e96c44eb5f5380d80b4cb05d608971a28fbe838b912b558bf9676c6c67c9692ed6ea063fc47b70d5d6004825c269b9",
        "cb8e68b5728d67f44844d97686a11154e3cbd4a6f9e47524d93d851bdce480d7762ded09be53d17cce3ee28dc5a06911",
        "c062b99b218355dd5822108c55e2c67f7ea0b74b6189b33b4589d8ff9d0c867d13edaaf1c5f724675320beda3e6acc67",
        "3c048fa04a1b30f899227d5a555e08a412a47b7db75eb118a8844a71b186880426f6bb6e77186d18e753cbcce93c9fb7",
        "6c729875b4d473eeca8dab9941969faef04df9ce3178e7341eab416d28bb7aee12bfb8f4c3df814eff45a0187329079a",
        "cfc41a8e8dba7b08d111f02e37a1d2b69e57eef808fcc6ae23385534a420a93dfb6a95c73e2f1016177c4fe9d3ced769",
        "e277293aaceded6d07efc7890eaa885bd1e73f9e5da2b9cfda0d44cbc9090705ac2ce3e7bcd7775b593c706e45ddc97d",
        "3a65d9b7e73673f9473df5bfec689671f73e7f6ee77c730a8ebda1f0b2c112a71904d6f28a51d8d479f8323fb485e722",
        "f5c4d5857e95989a9cbaf273efd04fc3cbde98baa9969e095e88accecfbd12ef2155497a5b15fe91a70d1106b91a5683",
        "63bfc2d6736cc8138cbc41ddf1e54fd40511e27d89e2c26c027b63c156e2bbb998faaed3d72186f0cc626dad39a782dc",
        "da2087fd13a9498e10b41b685646a227ea1166a5632c195983f4aba2b718b4074030d57126d34c38349892007acbea9e",
        "393b967dc3146b270f080a1f0bee90d65a095a6352a7718ed1717a8025a2bd38c66d120baf4247676a1fe044a57ce268",
        "c078f8ff46cc26fe4f9c7a03d6467adacb8418d26273662bce1f7bc00b906e0088e95dc0fb419e2232e85aac77b9e7cd",
        "563e604de5e1d3e9693dcd3b19865cf4250773691e7e0af9c2755cd31f49d1f96708f3ba2f0b98184525abb869e12d5c",
        "ea0ac1740181a875035300b05a54b8d42ee3b4ae92b06e43cd807e2b096c977f23c61ef8c989c52ed83754076dea1323",
        "f639250bef61bdf903bf7961cec89ba6942d9d0647ac9c8195d93ed8abcedf25754644035719a5a0a1c8c0798912726a",
        "9a8258e4c10ae7485322ed9ba331f6f090c4b492a4fcf53d753cd34f28ec0443fce0724f43c89a3942169d5099a8f743",
        "0f38691ebce2e3fe4f600d82c7ccedf60673f8e5d4c1a9f84b8b5b23f5ed63defb6a7205e0a8b105bdc6ff4568fc78cb",
        "4456b02fedb7f4c48f6fd6b69216a3319821039db40e19a31a0b0c9d471d5a7a73865d26f8be3595525b1ec4a8579efd",
        "07ea98e2602e2bffdfd8febc5c7b4c736d326b5030ccc6faf9420a9c156a8f4516b9fff675459dfdcd4ef85d7adbdffd",
        "60f4a39628e399cc752c2e99ab2f431dc765e7c9d206bfe32649fbef4ef48b1d7936fc74766d724350ee2245a8d5f23f",
        "bc6c7ed8b57168ce1e864e49d7f8c475dcda140bd42473825b3c72eb8c54780188813011e1962a503f9b516e13226de6",
        "375b204733b0192183c8f55e870e61cf8947c3191790bc0b657bc43aebc9d86c",
    );
    /// tcId 1: the expected (rejection) shared secret.
    const WYCHEPROOF_K: &str = "76c10bb1d86d96d7eb18e298363e51f7728e113f455df7d15017940ed3541451";

    #[test]
    fn keygen_from_seed_matches_the_lamps_example_key() {
        let seed: [u8; 64] = core::array::from_fn(|i| i as u8);
        let ek = DecapsulationKey::from_seed(&seed).encapsulation_key_bytes();
        assert_eq!(&ek[..4], &[0x29, 0x8a, 0xa1, 0x0d]);
        assert_eq!(sha256(&ek), hex(LAMPS_EK_SHA256));
    }

    #[test]
    fn keygen_and_implicit_rejection_match_wycheproof() {
        let seed: [u8; 64] = hex(WYCHEPROOF_SEED).try_into().unwrap();
        let dk = DecapsulationKey::from_seed(&seed);
        assert_eq!(dk.encapsulation_key_bytes().to_vec(), hex(WYCHEPROOF_EK));
        let c = hex(WYCHEPROOF_C);
        assert_eq!(c.len(), mlkem768::CIPHERTEXT_LEN);
        assert_eq!(dk.decapsulate(&c).unwrap().to_vec(), hex(WYCHEPROOF_K));
    }

    #[test]
    fn encapsulation_matches_acvp() {
        let ek = EncapsulationKey::from_bytes(&hex(ACVP_EK)).unwrap();
        let m: [u8; 32] = hex(ACVP_M).try_into().unwrap();
        let (c, k) = ek.encapsulate_with_message(&m);
        assert_eq!(c.to_vec(), hex(ACVP_C));
        assert_eq!(k.to_vec(), hex(ACVP_K));
    }

    #[test]
    fn round_trip_and_implicit_rejection() {
        let rng = SystemRandom::new();
        let dk = DecapsulationKey::generate(&rng).unwrap();
        let ek = EncapsulationKey::from_bytes(&dk.encapsulation_key_bytes()).unwrap();
        let (mut c, k) = ek.encapsulate(&rng).unwrap();
        assert_eq!(*dk.decapsulate(&c).unwrap(), *k);
        c[17] ^= 1;
        let rejected = dk.decapsulate(&c).unwrap();
        assert_ne!(*rejected, *k, "a corrupted ciphertext must not yield the shared secret");
    }

    #[test]
    fn lengths_are_checked() {
        let dk = DecapsulationKey::from_seed(&[7; 64]);
        for len in [0, mlkem768::CIPHERTEXT_LEN - 1, mlkem768::CIPHERTEXT_LEN + 1] {
            assert_eq!(dk.decapsulate(&vec![0; len]).unwrap_err(), Error::Length);
        }
        let ek = dk.encapsulation_key_bytes();
        assert_eq!(EncapsulationKey::from_bytes(&ek[1..]).unwrap_err(), Error::Length);
        let mut long = ek.to_vec();
        long.push(0);
        assert_eq!(EncapsulationKey::from_bytes(&long).unwrap_err(), Error::Length);
        assert_eq!(EncapsulationKey::from_bytes(&[]).unwrap_err(), Error::Length);
    }

    /// Sets the 12-bit coefficient `index` of the encoded key (little-endian pairs of
    /// coefficients in three bytes, FIPS 203 ByteEncode12).
    fn set_coefficient(ek: &mut [u8], index: usize, value: u16) {
        let at = index / 2 * 3;
        if index.is_multiple_of(2) {
            ek[at] = value as u8;
            ek[at + 1] = (ek[at + 1] & 0xf0) | (value >> 8) as u8;
        } else {
            ek[at + 1] = (ek[at + 1] & 0x0f) | ((value & 0x0f) << 4) as u8;
            ek[at + 2] = (value >> 4) as u8;
        }
    }

    #[test]
    fn modulus_check_refuses_non_canonical_keys() {
        let ek = DecapsulationKey::from_seed(&[9; 64]).encapsulation_key_bytes();
        // 768 coefficients in 1152 bytes, then the 32-byte seed rho (not range-checked).
        for (index, value, ok) in [
            (0, 3328, true),
            (0, 3329, false),
            (1, 3329, false),
            (0, 4095, false),
            (767, 3328, true),
            (767, 3329, false),
            (383, 0xfff, false),
        ] {
            let mut bad = ek;
            set_coefficient(&mut bad, index, value);
            let result = EncapsulationKey::from_bytes(&bad);
            assert_eq!(result.is_ok(), ok, "coefficient {index} = {value}");
            if !ok {
                assert_eq!(result.unwrap_err(), Error::InvalidEncapsulationKey);
            }
        }
        // rho is 32 arbitrary bytes.
        let mut rho = ek;
        rho[1152..].fill(0xff);
        assert!(EncapsulationKey::from_bytes(&rho).is_ok());
    }

    /// NIST's AES-256 CTR-DRBG (`rng.c` of the PQC KAT generators, as PQClean's
    /// `nistkatrng.c`).
    struct NistDrbg {
        key: [u8; 32],
        v: [u8; 16],
    }

    impl NistDrbg {
        fn new(entropy: &[u8; 48]) -> Self {
            let mut drbg = Self { key: [0; 32], v: [0; 16] };
            drbg.update(Some(entropy));
            drbg
        }

        fn block(&mut self) -> [u8; 16] {
            use aes::cipher::{BlockCipherEncrypt as _, KeyInit as _};
            for byte in self.v.iter_mut().rev() {
                let (next, carry) = byte.overflowing_add(1);
                *byte = next;
                if !carry {
                    break;
                }
            }
            let aes = aes::Aes256::new(&self.key.into());
            let mut block = self.v.into();
            aes.encrypt_block(&mut block);
            block.into()
        }

        fn update(&mut self, provided: Option<&[u8; 48]>) {
            let mut temp = [0u8; 48];
            for i in 0..3 {
                let block = self.block();
                temp[16 * i..16 * i + 16].copy_from_slice(&block);
            }
            if let Some(p) = provided {
                temp.iter_mut().zip(p).for_each(|(t, p)| *t ^= p);
            }
            self.key.copy_from_slice(&temp[..32]);
            self.v.copy_from_slice(&temp[32..]);
        }

        fn fill(&mut self, out: &mut [u8]) {
            for chunk in out.chunks_mut(16) {
                let block = self.block();
                chunk.copy_from_slice(&block[..chunk.len()]);
            }
            self.update(None);
        }
    }

    /// The NIST KAT file PQClean generates for ML-KEM-768 (`test/crypto_kem/nistkat.c`:
    /// DRBG seeded with 00 01 .. 2f, one `count = 0` entry), rebuilt here and compared by
    /// its SHA-256 with `nistkat-sha256` of PQClean's `crypto_kem/ml-kem-768/META.yml`
    /// (shipped inside the pqcrypto-mlkem 0.1.1 crate).
    #[test]
    fn nist_kat_file_matches_pqclean() {
        let entropy: [u8; 48] = core::array::from_fn(|i| i as u8);
        let mut drbg = NistDrbg::new(&entropy);
        let mut seed = [0u8; 48];
        drbg.fill(&mut seed);
        let mut drbg = NistDrbg::new(&seed);
        let mut coins = [0u8; 64];
        drbg.fill(&mut coins); // crypto_kem_keypair: d ‖ z in one call
        let dk = DecapsulationKey::from_seed(&coins);
        let pk = dk.encapsulation_key_bytes();
        let mut m = [0u8; 32];
        drbg.fill(&mut m); // crypto_kem_enc: m
        let (ct, ss) = EncapsulationKey::from_bytes(&pk).unwrap().encapsulate_with_message(&m);
        assert_eq!(*dk.decapsulate(&ct).unwrap(), *ss);
        let upper = |b: &[u8]| b.iter().map(|x| format!("{x:02X}")).collect::<String>();
        let file = format!(
            "count = 0\nseed = {}\npk = {}\nsk = {}\nct = {}\nss = {}\n",
            upper(&seed),
            upper(&pk),
            upper(&dk.expanded_bytes()),
            upper(&ct),
            upper(&*ss)
        );
        assert_eq!(
            sha256(file.as_bytes()),
            hex("5352539586b6c3df58be6158a6250aeff402bd73060b0a3de68850ac074c17c3")
        );
    }

    #[test]
    fn debug_shows_no_key_material() {
        let dk = DecapsulationKey::from_seed(&[0x42; 64]);
        assert_eq!(format!("{dk:?}"), "DecapsulationKey { .. }");
    }
}
