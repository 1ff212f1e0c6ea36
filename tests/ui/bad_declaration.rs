// The declaration must be `mod NAME { … }`.

convgen::conv! {
    pub block {
        input x: [1, 8, 6, 6];
        pointwise p(x) { out: 8 }
    }
}

fn main() {}
