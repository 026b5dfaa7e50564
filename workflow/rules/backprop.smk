# Claim C3: the NumPy backprop of section 2 checked against TensorFlow, plus the Fig. 4 tables.


rule verify_backprop:
    output:
        json="results/backprop/check.json",
        html="results/backprop/fig4.html",
    params:
        cases=config["backprop"]["cases"],
        seed=config["backprop"]["seed"],
    conda:
        "../envs/lfwcnn.yaml"
    log:
        "logs/backprop/verify.log",
    shell:
        "python -m lfwcnn.verify_backprop --cases {params.cases} --seed {params.seed}"
        " --json {output.json:q} --html {output.html:q} > {log:q} 2>&1"
