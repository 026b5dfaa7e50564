# Claim C3: the NumPy backprop of section 2 checked against TensorFlow, plus the Fig. 4 tables.


rule verify_backprop:
    output:
        check_json="results/backprop/check.json",
        fig4_html="results/backprop/fig4.html",
    log:
        "logs/backprop/verify.log",
    conda:
        "../envs/lfwcnn.yaml"
    params:
        backprop=config_section("backprop"),
    script:
        "../scripts/step.py"
